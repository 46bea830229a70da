using System.Buffers.Binary;
using PaliGemma.Gguf.Tasks;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;

namespace PaliGemma.Gguf.Tests.Tasks;

/// <summary>
/// Annotates pictures and decodes what was written. Every pixel is checked: outline pixels have the box colour,
/// label patches hold only the box colour and the text colour, and everything else is the original picture.
/// </summary>
public sealed class BoxAnnotatorTests : IDisposable
{
    private static readonly Rgba32 Red = LabelPalette.Colors[0];
    private static readonly Rgba32 Green = LabelPalette.Colors[1];
    private static readonly Rgba32 Black = new(0, 0, 0);
    private static readonly Rgba32 White = new(255, 255, 255);

    private readonly string _folder = Directory.CreateTempSubdirectory("paligemma-annotate-tests-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void A_box_on_chelsea_changes_only_its_outline_and_label()
    {
        string input = TaskTestFiles.TestImage("chelsea.png");
        string output = Path.Combine(_folder, "chelsea-boxes.png");
        var objects = DetectionParser.Parse("<loc0200><loc0300><loc0800><loc0700> cat", 451, 300);
        // y1 58.59 -> 59, x1 132.13 -> 132, y2 234.375 -> 234, x2 308.30 -> 308.
        Assert.Equal(new PixelBox(132, 59, 308, 234), Assert.Single(objects).Box);

        BoxAnnotator.Annotate(input, objects, output);

        using var before = Image.Load<Rgba32>(input);
        using var after = Image.Load<Rgba32>(output);
        // Thickness max(2, 300 / 200) = 2. "cat" at scale 1 with 2 pixels of padding: 3 * 6 - 1 + 4 = 21 by 7 + 4 = 11, above the box.
        var tag = new PixelBox(132, 48, 153, 59);
        AssertOnlyDrawn(before, after, thickness: 2, [(new PixelBox(132, 59, 308, 234), Red)], [(tag, Red)]);

        // Spot checks that do not depend on the helper.
        Assert.Equal(Red, after[200, 59]);
        Assert.Equal(Red, after[200, 60]);
        Assert.Equal(before[200, 61], after[200, 61]);
        Assert.Equal(before[200, 150], after[200, 150]);
        Assert.Equal(Red, after[307, 150]);
        Assert.Equal(before[308, 150], after[308, 150]);
        Assert.Equal(before[131, 150], after[131, 150]);
        Assert.Equal(Red, after[133, 49]);
        Assert.Equal(LitPixels("cat"), CountIn(after, tag, LabelPalette.TextColorOn(Red)));
        Assert.Equal(["chelsea-boxes.png"], Directory.GetFiles(_folder).Select(Path.GetFileName));
    }

    [Fact]
    public void Boxes_on_a_solid_picture_get_a_colour_per_label_and_invalid_ones_are_skipped()
    {
        string input = Path.Combine(_folder, "grey.png");
        var grey = new Rgba32(90, 90, 90);
        using (var picture = new Image<Rgba32>(640, 480, grey))
        {
            picture.SaveAsPng(input);
        }

        var objects = DetectionParser.Parse(
            "<loc0000><loc0512><loc0512><loc1023> person ; <loc0600><loc0100><loc0900><loc0400> dog ; "
            + "<loc0700><loc0700><loc0650><loc0900> broken ; <loc0100><loc0100><loc0300><loc0300> person",
            640,
            480);
        Assert.Equal(
            [new PixelBox(320, 0, 639, 240), new PixelBox(62, 281, 250, 422), new PixelBox(438, 328, 562, 305), new PixelBox(62, 47, 188, 141)],
            objects.Select(o => o.Box));
        Assert.False(objects[2].IsValid);
        string output = Path.Combine(_folder, "annotated.png");

        BoxAnnotator.Annotate(input, objects, output);

        using var before = Image.Load<Rgba32>(input);
        using var after = Image.Load<Rgba32>(output);
        AssertOnlyDrawn(
            before,
            after,
            thickness: 2,
            [(objects[0].Box, Red), (objects[1].Box, Green), (objects[3].Box, Red)],
            [
                // Box 0 touches the top: its label goes inside it. "person" is 6 * 6 - 1 + 4 = 39 wide.
                (new PixelBox(320, 0, 359, 11), Red),
                (new PixelBox(62, 270, 83, 281), Green),
                (new PixelBox(62, 36, 101, 47), Red),
            ]);

        Assert.Equal(Red, after[638, 100]);
        Assert.Equal(Red, after[637, 100]);
        Assert.Equal(grey, after[636, 100]);
        Assert.Equal(Red, after[321, 1]);
        Assert.Equal(Green, after[62, 300]);
        Assert.Equal(grey, after[61, 300]);
        // Where the invalid box would have been.
        Assert.Equal(grey, after[500, 316]);
        Assert.Equal(0, CountIn(after, new PixelBox(0, 0, 640, 480), LabelPalette.Colors[2]));
        Assert.Equal(["annotated.png", "grey.png"], Directory.GetFiles(_folder).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void A_label_that_would_leave_the_picture_is_moved_back_inside()
    {
        using var image = new Image<Rgba32>(100, 100, White);
        var box = new PixelBox(90, 50, 100, 60);

        BoxAnnotator.Draw(image, [new DetectedObject("abc", box, [0, 0, 0, 0], null, true)]);

        // 21 wide: from 100 - 21 = 79, not from the box's 90; 11 high, ending at the box's top.
        Assert.Equal(Red, image[79, 39]);
        Assert.Equal(Red, image[99, 49]);
        Assert.Equal(White, image[78, 45]);
        Assert.Equal(White, image[85, 38]);
        Assert.Equal(Red, image[90, 59]);
    }

    [Fact]
    public void An_existing_output_is_replaced_whole()
    {
        string output = Path.Combine(_folder, "out.png");
        File.WriteAllText(output, "not a picture");
        var objects = DetectionParser.Parse("<loc0100><loc0100><loc0900><loc0900> cat", 451, 300);

        BoxAnnotator.Annotate(TaskTestFiles.TestImage("chelsea.png"), objects, output);

        using var written = Image.Load<Rgba32>(output);
        Assert.Equal(451, written.Width);
        Assert.Equal(300, written.Height);
        Assert.Equal(["out.png"], Directory.GetFiles(_folder).Select(Path.GetFileName));
    }

    [Fact]
    public void A_failed_write_leaves_no_temporary_file()
    {
        // A folder where the PNG should go: the final rename fails after the PNG was written beside it.
        string output = Path.Combine(_folder, "taken");
        Directory.CreateDirectory(output);
        Directory.CreateDirectory(Path.Combine(output, "inside"));

        var error = Assert.Throws<PaliGemmaException>(() => BoxAnnotator.Annotate(TaskTestFiles.TestImage("chelsea.png"), [], output));

        Assert.Equal(output, error.FilePath);
        Assert.Empty(Directory.GetFiles(_folder));
        Assert.Equal(["taken"], Directory.GetDirectories(_folder).Select(Path.GetFileName));
    }

    [Fact]
    public void A_picture_over_the_pixel_budget_is_refused_before_decoding()
    {
        string input = Path.Combine(_folder, "bomb.bmp");
        File.WriteAllBytes(input, BmpHeader(20_000, 20_000));
        string output = Path.Combine(_folder, "bomb.png");

        var error = Assert.Throws<PaliGemmaException>(() => BoxAnnotator.Annotate(input, [], output));

        Assert.Contains("400000000 pixels", error.Message);
        Assert.Equal(input, error.FilePath);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void Missing_and_unreadable_pictures_are_refused_with_their_name()
    {
        string missing = Path.Combine(_folder, "missing.png");
        string text = Path.Combine(_folder, "notes.png");
        File.WriteAllText(text, "hello");

        Assert.Equal(missing, Assert.Throws<PaliGemmaException>(() => BoxAnnotator.Annotate(missing, [], Path.Combine(_folder, "a.png"))).FilePath);
        Assert.Equal(text, Assert.Throws<PaliGemmaException>(() => BoxAnnotator.Annotate(text, [], Path.Combine(_folder, "b.png"))).FilePath);
        Assert.Equal(["notes.png"], Directory.GetFiles(_folder).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData(255, 225, 25, 0)]    // yellow: black text
    [InlineData(70, 240, 240, 0)]    // cyan
    [InlineData(0, 0, 128, 255)]     // navy: white text
    [InlineData(145, 30, 180, 255)]  // purple
    [InlineData(255, 255, 255, 0)]
    [InlineData(0, 0, 0, 255)]
    public void Label_text_is_black_or_white_whichever_contrasts_more(byte r, byte g, byte b, byte expected)
    {
        Assert.Equal(new Rgba32(expected, expected, expected), LabelPalette.TextColorOn(new Rgba32(r, g, b)));
    }

    [Fact]
    public void The_same_label_keeps_its_colour_and_ten_labels_get_ten_colours()
    {
        var palette = new LabelPalette();
        var colors = Enumerable.Range(0, 10).Select(i => palette.ColorOf($"label {i}")).ToList();

        Assert.Equal(10, colors.Distinct().Count());
        Assert.Equal(colors[3], palette.ColorOf("label 3"));
        Assert.Equal(colors[0], palette.ColorOf("label 10"));
    }

    /// <summary>
    /// Every pixel of <paramref name="after"/>: on an outline ring, that box's colour; in a label patch, its colour
    /// or black or white; anywhere else, the pixel of <paramref name="before"/>.
    /// </summary>
    private static void AssertOnlyDrawn(
        Image<Rgba32> before,
        Image<Rgba32> after,
        int thickness,
        IReadOnlyList<(PixelBox Box, Rgba32 Color)> outlines,
        IReadOnlyList<(PixelBox Patch, Rgba32 Color)> labels)
    {
        Assert.Equal(before.Width, after.Width);
        Assert.Equal(before.Height, after.Height);
        var wrong = new List<string>();
        for (int y = 0; y < after.Height; y++)
        {
            for (int x = 0; x < after.Width; x++)
            {
                Rgba32 actual = after[x, y];
                var label = labels.FirstOrDefault(l => Contains(l.Patch, x, y));
                var outline = outlines.FirstOrDefault(o => Contains(o.Box, x, y) && !Contains(Shrink(o.Box, thickness), x, y));
                bool ok = label != default
                    ? actual == label.Color || actual == Black || actual == White
                    : outline != default ? actual == outline.Color : actual == before[x, y];
                if (!ok)
                {
                    wrong.Add($"({x}, {y}) is {actual}");
                }
            }
        }

        Assert.True(wrong.Count == 0, $"{wrong.Count} pixels wrong, first: {string.Join("; ", wrong.Take(5))}");
    }

    private static bool Contains(PixelBox box, int x, int y) => x >= box.X1 && x < box.X2 && y >= box.Y1 && y < box.Y2;

    private static PixelBox Shrink(PixelBox box, int by) => new(box.X1 + by, box.Y1 + by, box.X2 - by, box.Y2 - by);

    private static int CountIn(Image<Rgba32> image, PixelBox area, Rgba32 color)
    {
        int count = 0;
        for (int y = area.Y1; y < area.Y2; y++)
        {
            for (int x = area.X1; x < area.X2; x++)
            {
                count += image[x, y] == color ? 1 : 0;
            }
        }

        return count;
    }

    private static int LitPixels(string text) =>
        text.Sum(c => BitmapFont.Glyphs.Slice((c - ' ') * BitmapFont.GlyphHeight, BitmapFont.GlyphHeight).ToArray()
            .Sum(row => System.Numerics.BitOperations.PopCount(row)));

    /// <summary>A BITMAPINFOHEADER that declares a 24-bit picture and carries no pixels.</summary>
    private static byte[] BmpHeader(int width, int height)
    {
        var header = new byte[54];
        header[0] = (byte)'B';
        header[1] = (byte)'M';
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(2), header.Length);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(10), header.Length);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(18), width);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(22), height);
        BinaryPrimitives.WriteInt16LittleEndian(header.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(header.AsSpan(28), 24);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(38), 2835);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(42), 2835);
        return header;
    }
}
