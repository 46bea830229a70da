using PaliGemma.Gguf.Conversion;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Pbm;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tga;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.Memory;
using SixLabors.ImageSharp.Metadata;
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
    /// The most pixels a picture may declare, checked on its header before decoding: a small file can promise
    /// a huge image (a decompression bomb). The same budget as the preprocessor's.
    /// </summary>
    internal const long MaxPixels = 100_000_000;

    // Rgba64 is the widest pixel ImageSharp's decoders work in; small budgets still need the decoders' scratch buffers.
    private const long WidestPixelBytes = 8;
    private const int MinAllocationLimitMegabytes = 64;

    private static readonly Lazy<Configuration> DecodingConfiguration = new(CreateConfiguration);

    /// <summary>
    /// Reads the picture at <paramref name="imagePath"/>, draws the valid boxes of <paramref name="objects"/>
    /// with their labels, and writes a PNG to <paramref name="outputPath"/> (whatever its extension), creating its
    /// folder if needed. The PNG is written beside the output under a temporary name and renamed into place, so a
    /// failure leaves no partial file and an existing output is only ever replaced by a complete one. Throws <see cref="PaliGemmaException"/> when the picture cannot be read or the output written.
    /// </summary>
    public static void Annotate(string imagePath, IReadOnlyList<DetectedObject> objects, string outputPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(imagePath);
        ArgumentNullException.ThrowIfNull(objects);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputPath);

        using Image<Rgba32> image = Load(imagePath);
        Draw(image, objects);
        SavePng(image, outputPath);
    }

    /// <summary>Draws onto <paramref name="image"/> in place.</summary>
    internal static void Draw(Image<Rgba32> image, IReadOnlyList<DetectedObject> objects)
    {
        int shortSide = Math.Min(image.Width, image.Height);
        int thickness = Math.Max(2, shortSide / 200);
        int textScale = Math.Max(1, shortSide / 250);
        var palette = new LabelPalette();
        var drawn = new List<(string Label, PixelBox Box, Rgba32 Color)>();
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

    private static Image<Rgba32> Load(string path)
    {
        if (!File.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "image file not found");
        }

        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw PaliGemmaException.InFile(path, $"cannot open the image: {OneLine(e.Message)}", e);
        }

        using (stream)
        {
            Configuration configuration = DecodingConfiguration.Value;
            IImageInfo? info;
            IImageFormat? format;
            try
            {
                info = Image.Identify(configuration, stream, out format);
            }
            catch (Exception e) when (e is not PaliGemmaException)
            {
                // ImageSharp reports unknown and corrupt input with many exception types.
                throw PaliGemmaException.InFile(path, $"cannot read the image header: {OneLine(e.Message)}", e);
            }

            if (info is null || format is null)
            {
                throw PaliGemmaException.InFile(path, "not an image this program can read (it reads PNG, JPEG, GIF, BMP, TIFF, WebP, TGA or PBM)");
            }

            CheckPixelBudget(path, format.Name, info.Width, info.Height);
            Image<Rgba32> image;
            try
            {
                stream.Position = 0;
                image = Image.Load<Rgba32>(configuration, stream);
            }
            catch (Exception e) when (e is not PaliGemmaException)
            {
                throw PaliGemmaException.InFile(path, $"cannot decode the {format.Name} image, it is corrupt, truncated or too large: {OneLine(e.Message)}", e);
            }

            try
            {
                // The header was checked; what was decoded is what gets drawn on.
                CheckPixelBudget(path, format.Name, image.Width, image.Height);
                return image;
            }
            catch
            {
                image.Dispose();
                throw;
            }
        }
    }

    private static void CheckPixelBudget(string path, string format, int width, int height)
    {
        if (width <= 0 || height <= 0)
        {
            throw PaliGemmaException.InFile(path, $"{format} header declares an empty {width} x {height} image");
        }

        long pixels = (long)width * height;
        if (pixels > MaxPixels)
        {
            throw PaliGemmaException.InFile(
                path,
                $"{format} image is {width} x {height} = {pixels} pixels, over the pixel budget of {MaxPixels}; refused before decoding (a small file can declare a huge image)");
        }
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

    private static Configuration CreateConfiguration()
    {
        long limitMegabytes = Math.Clamp(MaxPixels * WidestPixelBytes / (1024 * 1024) + 1, MinAllocationLimitMegabytes, int.MaxValue);
        // Our own configuration: mutating Configuration.Default would change decoding for the whole process.
        var configuration = new Configuration(
            new PngConfigurationModule(),
            new JpegConfigurationModule(),
            new GifConfigurationModule(),
            new BmpConfigurationModule(),
            new TiffConfigurationModule(),
            new WebpConfigurationModule(),
            new TgaConfigurationModule(),
            new PbmConfigurationModule())
        {
            // Second line of defence behind the header check, for buffers the header does not predict.
            MemoryAllocator = MemoryAllocator.Create(new MemoryAllocatorOptions { AllocationLimitMegabytes = (int)limitMegabytes }),
        };

        // Only the first frame is annotated and written; decoding every frame of an animation would multiply the budget.
        configuration.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        configuration.ImageFormatsManager.SetDecoder(TiffFormat.Instance, new TiffDecoder { DecodingMode = FrameDecodingMode.First });
        return configuration;
    }
}
