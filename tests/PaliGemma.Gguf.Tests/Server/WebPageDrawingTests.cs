using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;
using PaliGemma.Gguf.Tasks;
using PaliGemma.Gguf.Tests.Infrastructure;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// What the page draws, read back from its canvas in a real headless Chromium: the trained tiny model's
/// detections through the real server, each box's four edges in the object's colour at the place its pixel
/// coordinates say, nothing inside or around it; and masks, each tinted where its box mask says.
/// </summary>
public sealed class WebPageDrawingTests(ServedTrainedModel served, ITestOutputHelper output) : IClassFixture<ServedTrainedModel>
{
    /// <summary>A picture wider than high (500 x 375) with two circles: the reference answers 'detect circle' with two boxes.</summary>
    private const string DetectPicture = "shapes_25_500x375";

    private const int MaxTokens = 32;

    [Fact]
    public async Task Detect_draws_every_returned_box_where_its_pixel_coordinates_say()
    {
        var picture = TrainedEval.Image(DetectPicture);
        var expected = served.DirectObjects(picture.Path, "detect circle", MaxTokens, picture.Width, picture.Height);
        output.WriteLine($"the library's objects: {string.Join(" ; ", expected.Select(o => $"{o.Label} {o.Box}"))}");
        // The check needs boxes to look at: a model whose answer has none would pass it vacuously.
        Assert.True(expected.Count(o => o.IsValid) >= 2, "the trained model no longer answers two boxes for this picture");

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await Chromium.NewPageAsync(browser);
        var scriptErrors = new List<string>();
        page.PageError += (_, error) => scriptErrors.Add(error);

        await RunTaskAsync(page, picture.Path, "Detect", "circle", "detect circle");

        Assert.Equal(expected.Select(Listed), await page.Locator("#objects li code").AllTextContentsAsync());
        await AssertDrawnAsync(page, expected);
        await page.ScreenshotAsync(new() { Path = Chromium.ScreenshotPath("serve-page.png", output) });
        Assert.Empty(scriptErrors);
    }

    [Fact]
    public async Task Segment_through_the_server_draws_what_the_library_answers()
    {
        // The trained model never learnt 'segment': what it answers (boxes, perhaps without codes) is still
        // parsed, decoded with the server's --vae and drawn exactly as the library says.
        var picture = TrainedEval.Image(DetectPicture);
        var expected = served.DirectObjects(picture.Path, "segment circle", MaxTokens, picture.Width, picture.Height);
        output.WriteLine($"the library's objects: {string.Join(" ; ", expected.Select(Listed))}");

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await Chromium.NewPageAsync(browser);
        await RunTaskAsync(page, picture.Path, "Segment", "circle", "segment circle");

        Assert.Equal(expected.Select(Listed), await page.Locator("#objects li code").AllTextContentsAsync());
        await AssertDrawnAsync(page, expected);
    }

    [Fact]
    public async Task Masks_are_tinted_where_the_box_mask_says_and_nowhere_else_in_the_box()
    {
        // No model here writes <seg> codes, so the server's answer is replaced, in the browser, by the result
        // object the server's own writer makes for a reference segmentation answer (three objects: two masks,
        // one box without codes), its masks decoded by the server's decoder (random weights: blobs).
        var answer = SegmentationGolden.Answer("three-451x300");
        var objects = served.Masks.AddMasks(DetectionParser.Parse(answer.Answer, answer.Width, answer.Height), answer.Width, answer.Height);
        Assert.Equal(2, objects.Count(o => o.Mask is not null));
        string picturePath = Path.Combine(TestModels.NewFolder("page-masks"), "grey-451x300.png");
        using (var grey = new Image<Rgb24>(answer.Width, answer.Height, new Rgb24(200, 200, 200)))
        {
            await grey.SaveAsPngAsync(picturePath);
        }

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await Chromium.NewPageAsync(browser);
        await page.RouteAsync("**/v1/paligemma/generate", route => route.FulfillAsync(new RouteFulfillOptions
        {
            Status = 200,
            ContentType = "text/event-stream",
            Body = $"event: result\ndata: {ResultJson(answer.Answer, objects)}\n\n",
        }));
        await RunTaskAsync(page, picturePath, "Segment", "cat", "segment cat");

        Assert.Equal(objects.Select(Listed), await page.Locator("#objects li code").AllTextContentsAsync());
        await AssertDrawnAsync(page, objects);
        await page.ScreenshotAsync(new() { Path = Chromium.ScreenshotPath("masks.png", output) });
    }

    /// <summary>Loads the page, picks the picture, chooses the task, runs it and waits for the result.</summary>
    private async Task RunTaskAsync(IPage page, string picturePath, string task, string subject, string prompt)
    {
        await page.GotoAsync(served.BaseAddress.ToString());
        await Assertions.Expect(page.Locator("#model")).ToHaveTextAsync(Path.GetFileNameWithoutExtension(served.Files.TextModelPath));
        await page.SetInputFilesAsync("#file", picturePath);
        await page.Locator("#picture-info").Filter(new() { HasText = "×" }).WaitForAsync();
        await page.Locator("fieldset.tasks label").Filter(new() { HasText = task }).ClickAsync();
        await page.FillAsync("#subject", subject);
        await Assertions.Expect(page.Locator("#prompt")).ToHaveValueAsync(prompt);
        await page.FillAsync("#max-tokens", MaxTokens.ToString(CultureInfo.InvariantCulture));
        await page.ClickAsync("#run");
        await Assertions.Expect(page.Locator("#status")).ToHaveAttributeAsync("data-state", "done", new() { Timeout = 60_000 });
    }

    /// <summary>How the page lists an object (the box in the picture's pixels).</summary>
    private static string Listed(DetectedObject o) =>
        $"[{o.Box.X1}, {o.Box.Y1}, {o.Box.X2}, {o.Box.Y2}]" + (o.IsValid ? "" : " invalid, not drawn")
        + (o.Mask is { } mask ? $" mask {mask.PixelCount} px" : o.SegmentCodes is not null ? " (mask codes; the server has no --vae)" : "");

    private static string ResultJson(string text, IReadOnlyList<DetectedObject> objects)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("text", text);
            writer.WriteStartArray("tokens");
            writer.WriteEndArray();
            writer.WriteNumber("prompt_tokens", 0);
            RunResultJson.WriteObjects(writer, objects);
            writer.WriteString("stop_reason", "eos");
            writer.WriteStartObject("timings");
            writer.WriteNumber("image_encode_ms", 0);
            writer.WriteNumber("prefill_ms", 0);
            writer.WriteNumber("decode_tokens_per_s", 0);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>
    /// Reads the overlay canvas back and checks, for every valid object: its box's four edges in its colour
    /// (the list's swatch), 1 px inside the 3 px stroke, at the box's pixel coordinates scaled to the canvas; the
    /// pixels just outside the edges and, without a mask, at the box's centre, untouched; with a mask, the tint
    /// (55% of the mask's byte as alpha) where the box mask is solidly set and nothing where it is solidly clear.
    /// Invalid boxes are listed, not drawn. Samples near another box, or under a label, are not judged.
    /// </summary>
    private async Task AssertDrawnAsync(IPage page, IReadOnlyList<DetectedObject> objects)
    {
        // The canvas lies exactly over the picture as shown.
        var pictureBox = (await page.Locator("#picture").BoundingBoxAsync())!;
        var canvasBox = (await page.Locator("#overlay").BoundingBoxAsync())!;
        Assert.Equal((pictureBox.X, pictureBox.Y, pictureBox.Width, pictureBox.Height), (canvasBox.X, canvasBox.Y, canvasBox.Width, canvasBox.Height));

        double[] size = await page.EvaluateAsync<double[]>("() => { const c = document.getElementById('overlay'), i = document.getElementById('picture'); return [c.width, c.height, i.naturalWidth, i.naturalHeight, window.devicePixelRatio]; }");
        int width = (int)size[0], height = (int)size[1];
        double sx = width / (double)size[2], sy = height / (double)size[3], dpr = size[4];
        string[] swatches = await page.Locator("#objects li .swatch").EvaluateAllAsync<string[]>("els => els.map(e => getComputedStyle(e).backgroundColor)");
        Assert.Equal(objects.Count, swatches.Length);
        Assert.Equal(objects.Count(o => o.IsValid).ToString(CultureInfo.InvariantCulture), await page.Locator("#overlay").GetAttributeAsync("data-boxes"));

        double stroke = 3 * dpr, label = 22 * dpr;
        var canvasBoxes = objects.Select(o => (X1: o.Box.X1 * sx, Y1: o.Box.Y1 * sy, X2: o.Box.X2 * sx, Y2: o.Box.Y2 * sy)).ToList();
        bool NearOther(int self, double x, double y) => Enumerable.Range(0, objects.Count)
            .Where(i => i != self && objects[i].IsValid).Select(i => canvasBoxes[i])
            .Any(b => x > b.X1 - stroke - 2 && x < b.X2 + stroke + 2 && y > b.Y1 - label - 2 && y < b.Y2 + stroke + 2);

        var samples = new List<(int X, int Y, int Object, string What, byte[] Rgb, Func<int[], byte[], bool> Holds)>();
        static bool Painted(int[] p, byte[] rgb) => p[3] == 255 && Math.Abs(p[0] - rgb[0]) <= 2 && Math.Abs(p[1] - rgb[1]) <= 2 && Math.Abs(p[2] - rgb[2]) <= 2;
        static bool Clear(int[] p, byte[] rgb) => p[3] == 0;
        int Col(double x) => Math.Clamp((int)Math.Floor(x), 0, width - 1);
        int Row(double y) => Math.Clamp((int)Math.Floor(y), 0, height - 1);
        void Add(int index, double x, double y, string what, Func<int[], byte[], bool> holds, bool judgeNearOthers = false)
        {
            if (x < 0 || y < 0 || x >= width || y >= height || (!judgeNearOthers && NearOther(index, x, y)))
            {
                return;
            }

            samples.Add((Col(x), Row(y), index, what, Rgb(swatches[index]), holds));
        }

        int maskSet = 0, maskClear = 0;
        for (int i = 0; i < objects.Count; i++)
        {
            var o = objects[i];
            var (x1, y1, x2, y2) = canvasBoxes[i];
            if (!o.IsValid)
            {
                continue;
            }

            foreach (double f in new[] { 0.25, 0.5, 0.75 })
            {
                double x = x1 + (f * (x2 - x1)), y = y1 + (f * (y2 - y1));
                Add(i, x1, y, "left edge", Painted);
                Add(i, Math.Min(x2, width - 0.5), y, "right edge", Painted);
                Add(i, x, y1, "top edge", Painted);
                Add(i, x, Math.Min(y2, height - 0.5), "bottom edge", Painted);
                Add(i, x1 - stroke - 3, y, "left of the left edge", Clear);
                Add(i, x2 + stroke + 3, y, "right of the right edge", Clear);
                Add(i, x, y2 + stroke + 3, "below the bottom edge", Clear);
            }

            if (o.Mask is null)
            {
                if (y2 - y1 > (2 * label) + stroke)
                {
                    Add(i, (x1 + x2) / 2, (y1 + y2) / 2, "centre", Clear);
                }

                continue;
            }

            var (set, clear) = AddMaskSamples(i, o, x1, y1, sx, sy, stroke, label, Add);
            maskSet += set;
            maskClear += clear;
        }

        // Masks were drawn: the check saw solidly set and solidly clear parts of them.
        Assert.True(objects.All(o => o.Mask is null) || (maskSet > 0 && maskClear > 0), $"the masks gave {maskSet} set and {maskClear} clear pixels to check");

        var points = samples.Select(s => new[] { s.X, s.Y }).ToArray();
        int[][] pixels = await page.EvaluateAsync<int[][]>(
            "points => { const ctx = document.getElementById('overlay').getContext('2d'); return points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data)); }",
            points);
        var wrong = samples.Zip(pixels).Where(s => !s.First.Holds(s.Second, s.First.Rgb))
            .Select(s => $"object {s.First.Object} {s.First.What} at ({s.First.X}, {s.First.Y}): rgba({string.Join(", ", s.Second)}), its colour rgb({string.Join(", ", s.First.Rgb)})").ToList();
        output.WriteLine($"canvas {width} x {height} for {size[2]} x {size[3]}: {samples.Count} pixels checked ({maskSet} in set and {maskClear} in clear parts of masks), {wrong.Count} wrong");
        Assert.True(wrong.Count == 0, string.Join("\n", wrong.Take(12)));
        Assert.True(samples.Count >= 12 * objects.Count(o => o.IsValid), $"only {samples.Count} pixels could be judged");
    }

    /// <summary>
    /// Canvas pixels whose neighbourhood in the box mask is solidly set (every byte >= 230: tinted, alpha about
    /// 0.55 x byte) or solidly clear (every byte 0: untouched), away from the stroke and the label.
    /// </summary>
    private static (int Set, int Clear) AddMaskSamples(int index, DetectedObject o, double x1, double y1, double sx, double sy, double stroke, double label, Action<int, double, double, string, Func<int[], byte[], bool>, bool> add)
    {
        var mask = o.Mask!;
        int w = o.Box.Width, h = o.Box.Height;
        byte At(int mx, int my) => mask.BoxMask[(Math.Clamp(my, 0, h - 1) * w) + Math.Clamp(mx, 0, w - 1)];
        bool All(int mx, int my, Func<byte, bool> test)
        {
            for (int dy = -2; dy <= 2; dy++)
            {
                for (int dx = -2; dx <= 2; dx++)
                {
                    if (!test(At(mx + dx, my + dy)))
                    {
                        return false;
                    }
                }
            }

            return true;
        }

        static bool Tinted(int[] p, byte[] rgb) => p[3] >= (int)(0.55 * 230) - 2 && p[3] <= (int)(0.55 * 255) + 2
            && Math.Abs(p[0] - rgb[0]) <= 4 && Math.Abs(p[1] - rgb[1]) <= 4 && Math.Abs(p[2] - rgb[2]) <= 4;
        static bool Clear(int[] p, byte[] rgb) => p[3] == 0;

        int set = 0, clear = 0;
        int stepX = Math.Max(1, w / 12), stepY = Math.Max(1, h / 12);
        for (int my = 2; my < h - 2; my += stepY)
        {
            for (int mx = 2; mx < w - 2; mx += stepX)
            {
                // The canvas pixel whose centre falls on this mask pixel's centre.
                double cx = x1 + ((mx + 0.5) * sx), cy = y1 + ((my + 0.5) * sy);
                if (cx - x1 < stroke + 2 || (o.Box.Width * sx) - (cx - x1) < stroke + 2 || cy - y1 < label + 2 || (o.Box.Height * sy) - (cy - y1) < stroke + 2)
                {
                    continue;
                }

                if (All(mx, my, b => b >= 230) && set < 40)
                {
                    add(index, cx, cy, $"mask set at ({mx}, {my})", Tinted, false);
                    set++;
                }
                else if (All(mx, my, b => b == 0) && clear < 40)
                {
                    add(index, cx, cy, $"mask clear at ({mx}, {my})", Clear, false);
                    clear++;
                }
            }
        }

        return (set, clear);
    }

    private static byte[] Rgb(string css)
    {
        // getComputedStyle gives "rgb(r, g, b)".
        string[] parts = css[(css.IndexOf('(', StringComparison.Ordinal) + 1)..css.IndexOf(')', StringComparison.Ordinal)].Split(',');
        return parts.Take(3).Select(p => byte.Parse(p.Trim(), CultureInfo.InvariantCulture)).ToArray();
    }
}
