using System.Runtime.InteropServices;
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

namespace PaliGemma.Gguf.Inference;

/// <summary>S x S RGB pixels ready for mtmd, plus the original size (detection maps boxes back onto it).</summary>
/// <param name="Size">The side of the square, in pixels.</param>
/// <param name="Rgb">Size * Size * 3 bytes, row-major, R G B interleaved.</param>
/// <param name="OriginalWidth">The decoded image's width before the resize.</param>
/// <param name="OriginalHeight">The decoded image's height before the resize.</param>
public sealed record PreparedImage(int Size, byte[] Rgb, int OriginalWidth, int OriginalHeight);

/// <summary>
/// Decodes a picture and resizes it the way Hugging Face's SiglipImageProcessor does for PaliGemma:
/// PIL's <c>convert("RGB")</c> then <c>resize((S, S), BICUBIC)</c>, a stretch that ignores the aspect ratio.
/// The resize is a port of Pillow's integer resampler (libImaging/Resample.c), so the pixels the vision
/// tower sees are the ones the reference implementation feeds it, not merely similar ones. transformers 5.x
/// resizes with torchvision instead, the same algorithm with coarser fixed-point weights:
/// <see cref="BicubicVariant.Torchvision"/> reproduces that one.
/// </summary>
/// <remarks>
/// Where decoding can differ from PIL: 16-bit channels keep their high byte, which is what PIL does for
/// 16-bit RGB/RGBA/LA PNGs; for 16-bit greyscale PNGs PIL clips every value above 255 to white, which
/// destroys the picture, so we keep the high byte there too. JPEGs go through ImageSharp's decoder rather
/// than libjpeg-turbo: their IDCTs differ by a level, their chroma upsampling by more (a 4:2:0 photo resized to
/// 224 differs by 0.3 levels on average, up to 10 at sharp colour edges). EXIF orientation
/// is not applied, as neither <c>Image.open</c> nor the processor applies it. Animated images give their
/// first frame, as <c>Image.open</c> does.
/// </remarks>
public static class ImagePreprocessor
{
    /// <summary>
    /// The most pixels an image may declare. Headers are a few bytes but promise width x height pixels:
    /// a 100-byte PNG can claim 40000 x 40000 and make a decoder allocate gigabytes (a decompression bomb).
    /// 100 MP is above what nearly every camera writes (pass a larger budget for the few 108-200 MP phone modes)
    /// and costs at most 300 MB as RGB, which a machine that runs a 3B model has.
    /// </summary>
    public const long DefaultMaxPixels = 100_000_000;

    private const string ReadableFormats = "PNG, JPEG, GIF, BMP, TIFF, WebP, TGA or PBM";



    // The widest pixel ImageSharp's decoders work in is Rgba64: 8 bytes.
    private const long WidestPixelBytes = 8;

    // Small budgets still need room for decoders' fixed-size scratch buffers.
    private const int MinAllocationLimitMegabytes = 64;

    private static readonly Lazy<Configuration> DefaultConfiguration = new(() => CreateConfiguration(DefaultMaxPixels));

    /// <summary>Reads the image at <paramref name="path"/>; throws <see cref="PaliGemmaException"/> naming the file when it cannot.</summary>
    public static PreparedImage Load(string path, int size, long maxPixels = DefaultMaxPixels, BicubicVariant variant = BicubicVariant.Pillow)
    {
        ArgumentNullException.ThrowIfNull(path);
        ValidateArguments(size, maxPixels);
        using var stream = OpenFile(path);
        return Load(stream, path, size, maxPixels, variant);
    }

    /// <summary>
    /// Decodes a picture with the same checks as <see cref="Load(string, int, long, BicubicVariant)"/> (pixel
    /// budget before decoding, truncation), as RGB without alpha: what the model sees, for drawing on.
    /// </summary>
    internal static Image DecodeFile(string path, long maxPixels = DefaultMaxPixels)
    {
        using var stream = OpenFile(path);
        return Decode(stream, path, maxPixels, maxPixels == DefaultMaxPixels ? DefaultConfiguration.Value : CreateConfiguration(maxPixels));
    }

    /// <summary>The decoded picture at full size, before any resize: what the reference's Pillow gives.</summary>
    internal static RgbPicture DecodePicture(string path, long maxPixels = DefaultMaxPixels)
    {
        using var image = DecodeFile(path, maxPixels);
        return new RgbPicture(image.Width, image.Height, ToRgbBytes(image));
    }

    private static FileStream OpenFile(string path)
    {
        if (!File.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "image file not found");
        }

        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw PaliGemmaException.InFile(path, $"cannot open the image: {OneLine(e.Message)}", e);
        }
    }

    /// <summary>
    /// Reads an image from <paramref name="stream"/> (from its current position); <paramref name="displayName"/>
    /// names it in error messages. Throws <see cref="PaliGemmaException"/> when the bytes are not a readable image.
    /// </summary>
    public static PreparedImage Load(Stream stream, string displayName, int size, long maxPixels = DefaultMaxPixels, BicubicVariant variant = BicubicVariant.Pillow)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(displayName);
        ValidateArguments(size, maxPixels);
        if (!stream.CanRead)
        {
            throw new ArgumentException("The stream must be readable.", nameof(stream));
        }

        Configuration configuration = maxPixels == DefaultMaxPixels ? DefaultConfiguration.Value : CreateConfiguration(maxPixels);
        try
        {
            // Identify, then decode, reads the header twice: the stream has to go back to where it started.
            if (stream.CanSeek)
            {
                return LoadSeekable(stream, displayName, size, maxPixels, variant, configuration);
            }

            using var copy = new MemoryStream();
            try
            {
                stream.CopyTo(copy);
            }
            catch (IOException e)
            {
                throw PaliGemmaException.InFile(displayName, $"cannot read the image: {OneLine(e.Message)}", e);
            }

            copy.Position = 0;
            return LoadSeekable(copy, displayName, size, maxPixels, variant, configuration);
        }
        finally
        {
            if (!ReferenceEquals(configuration, DefaultConfiguration.Value))
            {
                // A one-off allocator's pool would otherwise hold its buffers until the finalizer runs.
                configuration.MemoryAllocator.ReleaseRetainedResources();
            }
        }
    }

    private static void ValidateArguments(int size, long maxPixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPixels);
        // The result is one byte array.
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)size * size * 3, Array.MaxLength, nameof(size));
    }

    private static PreparedImage LoadSeekable(Stream stream, string name, int size, long maxPixels, BicubicVariant variant, Configuration configuration)
    {
        using Image image = Decode(stream, name, maxPixels, configuration);
        int width = image.Width;
        int height = image.Height;
        byte[] rgb;
        if (image is Image<Rgb24> rgb24 && rgb24.DangerousTryGetSinglePixelMemory(out Memory<Rgb24> memory))
        {
            // The decoder's own buffer: no second full-size copy of a large photo.
            rgb = PillowBicubic.Resize(MemoryMarshal.AsBytes(memory.Span), width, height, size, size, variant);
        }
        else
        {
            rgb = PillowBicubic.Resize(ToRgbBytes(image), width, height, size, size, variant);
        }

        return new PreparedImage(size, rgb, width, height);
    }

    /// <summary>Decodes to <see cref="Rgb24"/>, or <see cref="Rgb48"/> for 16-bit PNGs; alpha is dropped, never composited, as PIL's convert("RGB") does.</summary>
    private static Image Decode(Stream stream, string name, long maxPixels, Configuration configuration)
    {
        long start = stream.Position;
        IImageInfo? info;
        IImageFormat? format;
        try
        {
            info = Image.Identify(configuration, stream, out format);
        }
        catch (UnknownImageFormatException e)
        {
            throw NotAnImage(name, e);
        }
        catch (Exception e) when (e is not PaliGemmaException)
        {
            // ImageSharp's decoders report corrupt input with many exception types, not only ImageFormatException.
            throw PaliGemmaException.InFile(name, $"cannot read the image header: {OneLine(e.Message)}", e);
        }

        if (info is null || format is null)
        {
            throw NotAnImage(name, null);
        }

        if (info.Width <= 0 || info.Height <= 0)
        {
            throw PaliGemmaException.InFile(name, $"{format.Name} header declares an empty {info.Width} x {info.Height} image");
        }

        CheckPixelBudget(name, format.Name, info.Width, info.Height, maxPixels);

        string? missing;
        try
        {
            stream.Position = start;
            missing = ImageCompleteness.FindProblem(stream, format);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(name, $"cannot read the image: {OneLine(e.Message)}", e);
        }

        if (missing is not null)
        {
            throw PaliGemmaException.InFile(name, $"truncated or corrupt {format.Name} image: {missing}");
        }

        // PIL keeps the high byte of 16-bit PNG channels; ImageSharp's Rgb24 would round instead.
        bool sixteenBit = format is PngFormat && info.Metadata.GetPngMetadata().BitDepth == PngBitDepth.Bit16;
        Image image;
        try
        {
            stream.Position = start;
            image = sixteenBit ? Image.Load<Rgb48>(configuration, stream) : Image.Load<Rgb24>(configuration, stream);
        }
        catch (UnknownImageFormatException e)
        {
            throw NotAnImage(name, e);
        }
        catch (InvalidMemoryOperationException e)
        {
            throw PaliGemmaException.InFile(name, $"decoding the {format.Name} image needs more memory than its {maxPixels}-pixel budget allows: {OneLine(e.Message)}", e);
        }
        catch (Exception e) when (e is not PaliGemmaException)
        {
            throw PaliGemmaException.InFile(name, $"cannot decode the {format.Name} image, it is corrupt or truncated: {OneLine(e.Message)}", e);
        }

        try
        {
            // The header was checked, but what was decoded is what gets resized.
            CheckPixelBudget(name, format.Name, image.Width, image.Height, maxPixels);
            return image;
        }
        catch
        {
            image.Dispose();
            throw;
        }
    }

    private static void CheckPixelBudget(string name, string format, int width, int height, long maxPixels)
    {
        long pixels = (long)width * height;
        if (pixels > maxPixels)
        {
            throw PaliGemmaException.InFile(
                name,
                $"{format} image is {width} x {height} = {pixels} pixels, over the pixel budget of {maxPixels} (a guard against decompression bombs: a small file can declare a huge image)");
        }

        if (pixels * 3 > Array.MaxLength)
        {
            throw PaliGemmaException.InFile(name, $"{format} image is {width} x {height} pixels, too large to hold as one RGB buffer");
        }
    }

    private static PaliGemmaException NotAnImage(string name, Exception? inner)
    {
        const string Problem = $"not an image this program can read (it reads {ReadableFormats})";
        return inner is null ? PaliGemmaException.InFile(name, Problem) : PaliGemmaException.InFile(name, Problem, inner);
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    private static Configuration CreateConfiguration(long maxPixels)
    {
        long limitMegabytes = Math.Clamp(maxPixels * WidestPixelBytes / (1024 * 1024) + 1, MinAllocationLimitMegabytes, int.MaxValue);
        // A configuration of our own: Configuration.Default.Clone() would share, and let us mutate, the process-wide decoder table.
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
            ReadOrigin = ReadOrigin.Current,
            // One buffer lets the resampler read the decoder's pixels in place.
            PreferContiguousImageBuffers = true,
            // Second line of defence behind the header check, for buffers the header does not predict.
            MemoryAllocator = MemoryAllocator.Create(new MemoryAllocatorOptions { AllocationLimitMegabytes = (int)limitMegabytes }),
        };

        // Image.open shows the first frame; decoding every frame of an animation would multiply the budget.
        configuration.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        configuration.ImageFormatsManager.SetDecoder(TiffFormat.Instance, new TiffDecoder { DecodingMode = FrameDecodingMode.First });
        return configuration;
    }

    private static byte[] ToRgbBytes(Image image)
    {
        var rgb = new byte[(long)image.Width * image.Height * 3];
        switch (image)
        {
            case Image<Rgb24> rgb24:
                rgb24.CopyPixelDataTo(rgb);
                break;
            case Image<Rgb48> rgb48:
                rgb48.ProcessPixelRows(accessor =>
                {
                    for (int y = 0; y < accessor.Height; y++)
                    {
                        Span<Rgb48> row = accessor.GetRowSpan(y);
                        Span<byte> destination = rgb.AsSpan(y * row.Length * 3, row.Length * 3);
                        for (int x = 0; x < row.Length; x++)
                        {
                            destination[3 * x] = (byte)(row[x].R >> 8);
                            destination[3 * x + 1] = (byte)(row[x].G >> 8);
                            destination[3 * x + 2] = (byte)(row[x].B >> 8);
                        }
                    }
                });
                break;
            default:
                throw new InvalidOperationException($"Unexpected pixel type {image.GetType()}.");
        }

        return rgb;
    }

}
