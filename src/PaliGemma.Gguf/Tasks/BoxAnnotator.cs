using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace PaliGemma.Gguf.Tasks;

/// <summary>
/// Draws detected boxes and their labels onto the original picture and writes it as a PNG.
/// </summary>
/// <remarks>
/// The boxes are drawn where <see cref="DetectedObject.Box"/> says, so parse with the size of the picture
/// being annotated. The picture is drawn on as decoded, without applying EXIF orientation, because that is the
/// pixel grid the model saw (see ImagePreprocessor).
/// </remarks>
public static class BoxAnnotator
{
    /// <summary>
    /// Reads the picture at <paramref name="imagePath"/>, draws the valid boxes of <paramref name="objects"/>
    /// with their labels, and writes a PNG to <paramref name="outputPath"/> (whatever its extension), creating its
    /// folder if needed. The PNG is written beside the output under a temporary name and renamed into place, so a
    /// failure leaves no partial file and an existing output is only ever replaced by a complete one. Throws <see cref="PaliGemmaException"/> when the picture cannot be read or the output written.
    /// </summary>
    /// <param name="applyExifOrientation">Draw on the picture turned by its EXIF orientation, as the model saw it (default); false when the model saw the stored pixels.</param>
    public static void Annotate(string imagePath, IReadOnlyList<DetectedObject> objects, string outputPath, bool applyExifOrientation = true)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(imagePath);
        ArgumentNullException.ThrowIfNull(objects);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputPath);

        using Image<Rgba32> image = Load(imagePath, applyExifOrientation);
        Draw(image, objects);
        SavePng(image, outputPath);
    }

    /// <summary>
    /// Parses a detection answer against the picture's own size, draws it like
    /// <see cref="Annotate(string, IReadOnlyList{DetectedObject}, string, bool)"/>, and returns the objects found.
    /// </summary>
    public static IReadOnlyList<DetectedObject> Annotate(string imagePath, string modelOutput, string outputPath, bool applyExifOrientation = true)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(imagePath);
        ArgumentNullException.ThrowIfNull(modelOutput);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputPath);

        using Image<Rgba32> image = Load(imagePath, applyExifOrientation);
        var objects = DetectionParser.Parse(modelOutput, image.Width, image.Height);
        Draw(image, objects);
        SavePng(image, outputPath);
        return objects;
    }

    /// <summary>Draws onto <paramref name="image"/> in place.</summary>
    internal static void Draw(Image<Rgba32> image, IReadOnlyList<DetectedObject> objects)
    {
        int shortSide = Math.Min(image.Width, image.Height);
        int thickness = Math.Max(2, shortSide / 200);
        int textScale = Math.Max(1, shortSide / 250);
        var palette = new LabelPalette();
        var drawn = new List<(string Label, PixelBox Box, Rgba32 Color)>();

        // Masks first, so that outlines and labels stay on top of every mask.
        foreach (DetectedObject detected in objects)
        {
            if (detected.Mask is { } mask && mask.PictureWidth == image.Width && mask.PictureHeight == image.Height)
            {
                Tint(image, mask, palette.ColorOf(detected.Label));
            }
        }

        foreach (DetectedObject detected in objects)
        {
            PixelBox box = ClampTo(detected.Box, image);
            if (!detected.IsValid || box.Width <= 0 || box.Height <= 0)
            {
                continue;
            }

            Rgba32 color = palette.ColorOf(detected.Label);
            DrawOutline(image, box, thickness, color);
            drawn.Add((detected.Label, box, color));
        }

        // Labels go on after every outline, so that no box is drawn across another box's label.
        foreach (var (label, box, color) in drawn)
        {
            DrawLabel(image, label, box, textScale, color);
        }
    }

    /// <summary>The label's colour over the mask at half opacity times the soft mask, so the mask's soft edge shows.</summary>
    private static void Tint(Image<Rgba32> image, Segmentation.ObjectMask mask, Rgba32 color)
    {
        const int MaxOpacity = 128;
        PixelBox box = mask.Box;
        image.ProcessPixelRows(accessor =>
        {
            for (int row = 0; row < box.Height; row++)
            {
                Span<Rgba32> pixels = accessor.GetRowSpan(box.Y1 + row).Slice(box.X1, box.Width);
                ReadOnlySpan<byte> soft = mask.BoxMask.AsSpan(row * box.Width, box.Width);
                for (int x = 0; x < pixels.Length; x++)
                {
                    int alpha = soft[x] * MaxOpacity / 255;
                    if (alpha == 0)
                    {
                        continue;
                    }

                    ref Rgba32 p = ref pixels[x];
                    p.R = (byte)(((p.R * (255 - alpha)) + (color.R * alpha) + 127) / 255);
                    p.G = (byte)(((p.G * (255 - alpha)) + (color.G * alpha) + 127) / 255);
                    p.B = (byte)(((p.B * (255 - alpha)) + (color.B * alpha) + 127) / 255);
                }
            }
        });
    }

    private static PixelBox ClampTo(PixelBox box, Image image) => new(
        Math.Clamp(box.X1, 0, image.Width),
        Math.Clamp(box.Y1, 0, image.Height),
        Math.Clamp(box.X2, 0, image.Width),
        Math.Clamp(box.Y2, 0, image.Height));

    /// <summary>The outline lies inside the box (X2 and Y2 are exclusive), so a box at the picture's edge shows whole.</summary>
    private static void DrawOutline(Image<Rgba32> image, PixelBox box, int thickness, Rgba32 color)
    {
        Raster.FillRectangle(image, box.X1, box.Y1, box.Width, thickness, color);
        Raster.FillRectangle(image, box.X1, box.Y2 - thickness, box.Width, thickness, color);
        Raster.FillRectangle(image, box.X1, box.Y1, thickness, box.Height, color);
        Raster.FillRectangle(image, box.X2 - thickness, box.Y1, thickness, box.Height, color);
    }

    /// <summary>
    /// The label on a patch of the box colour, on top of the box's top-left corner; inside the box when there is
    /// no room above it, and shifted left (then cut short) when it would run off the right edge.
    /// </summary>
    private static void DrawLabel(Image<Rgba32> image, string label, PixelBox box, int scale, Rgba32 color)
    {
        string text = BitmapFont.ToDrawable(label);
        int padding = 2 * scale;
        int fitting = (image.Width - 2 * padding + scale) / (BitmapFont.Advance * scale);
        if (text.Length == 0 || fitting <= 0)
        {
            return;
        }

        if (text.Length > fitting)
        {
            text = text[..fitting];
        }

        int width = BitmapFont.MeasureWidth(text.Length, scale) + 2 * padding;
        int height = BitmapFont.GlyphHeight * scale + 2 * padding;
        int top = box.Y1 >= height ? box.Y1 - height : box.Y1;
        int left = Math.Min(box.X1, Math.Max(0, image.Width - width));
        Raster.FillRectangle(image, left, top, width, height, color);
        BitmapFont.Draw(image, text, left + padding, top + padding, scale, LabelPalette.TextColorOn(color));
    }

    private static Image<Rgba32> Load(string path, bool applyExifOrientation)
    {
        RgbPicture decoded = ImagePreprocessor.DecodePicture(path, applyExifOrientation: applyExifOrientation);
        using var rgb = Image.LoadPixelData<Rgb24>(decoded.Rgb, decoded.Width, decoded.Height);
        return rgb.CloneAs<Rgba32>();
    }

    private static void SavePng(Image<Rgba32> image, string outputPath)
    {
        string? temporary = null;
        try
        {
            // Beside the output, so the rename is atomic and cannot cross file systems; registered, so Ctrl+C removes it.
            temporary = TemporaryFiles.CreatePath(outputPath);
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                image.Save(stream, new PngEncoder());
            }

            File.Move(temporary, outputPath, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw PaliGemmaException.InFile(outputPath, $"cannot write the annotated image: {OneLine(e.Message)}", e);
        }
        finally
        {
            // After the rename there is nothing left to delete; after a failure, the partial file goes.
            if (temporary is not null)
            {
                TemporaryFiles.Delete(temporary);
            }
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
