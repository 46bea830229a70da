using System.Collections.Concurrent;
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
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Decodes a picture file to exactly the RGB bytes the reference's Pillow gives for
/// <c>Image.open(path)</c> → <c>ImageOps.exif_transpose(image)</c> → <c>image.convert("RGB")</c>:
/// JPEG through libjpeg-turbo (<see cref="SkiaJpegDecoder"/>), every other format through ImageSharp with
/// Pillow's conventions where they differ (below). The size is checked against a pixel budget before any
/// pixel is decoded, and a truncated file is refused, as Pillow refuses it.
/// </summary>
/// <remarks>
/// Pillow's conventions: alpha is dropped, never composited; a GIF's transparent index gives its palette colour;
/// 16-bit RGB and RGBA PNG samples keep their high byte; 16-bit greyscale PNG samples are clipped to 0..255
/// (Pillow opens them as 32-bit integers, and convert("RGB") clips rather than scales); animated pictures give
/// their first frame.
/// </remarks>
internal static class PictureDecoder
{
    private const string ReadableFormats = "PNG, JPEG, GIF, BMP, TIFF, WebP, TGA or PBM";

    // The widest pixel ImageSharp's decoders work in is Rgba64: 8 bytes.
    private const long WidestPixelBytes = 8;

    // Small budgets still need room for decoders' fixed-size scratch buffers.
    private const int MinAllocationLimitMegabytes = 64;

    // Configurations are kept, one per allocation limit: building one builds a decoder table and an allocator whose
    // pool would start empty for every picture (a server decodes one per request). A caller that passes many
    // different budgets gets one-off configurations past this many.
    private const int MaxKeptConfigurations = 8;

    private static readonly ConcurrentDictionary<int, Configuration> KeptConfigurations = new();

    /// <summary>Decodes the picture starting at the stream's position; throws <see cref="PaliGemmaException"/> naming <paramref name="name"/>.</summary>
    /// <param name="applyOrientation">Turn the picture as its EXIF Orientation says (Pillow's exif_transpose); false keeps the stored pixels.</param>
    public static RgbPicture Decode(Stream stream, string name, long maxPixels, bool applyOrientation = true)
    {
        // Format, header, structure and pixels each read from the start: the stream has to go back.
        if (!stream.CanSeek)
        {
            using var copy = new MemoryStream();
            try
            {
                stream.CopyTo(copy);
            }
            catch (IOException e)
            {
                throw PaliGemmaException.InFile(name, $"cannot read the image: {OneLine(e.Message)}", e);
            }

            copy.Position = 0;
            return Decode(copy, name, maxPixels, applyOrientation);
        }

        int limitMegabytes = AllocationLimitMegabytes(maxPixels);
        Configuration? keptConfiguration = KeptConfiguration(limitMegabytes);
        Configuration configuration = keptConfiguration ?? CreateConfiguration(limitMegabytes);
        try
        {
            return DecodeSeekable(stream, name, maxPixels, configuration, applyOrientation);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(name, $"cannot read the image: {OneLine(e.Message)}", e);
        }
        finally
        {
            if (keptConfiguration is null)
            {
                // A one-off allocator's pool would otherwise hold its buffers until the finalizer runs.
                configuration.MemoryAllocator.ReleaseRetainedResources();
            }
        }
    }

    private static RgbPicture DecodeSeekable(Stream stream, string name, long maxPixels, Configuration configuration, bool applyOrientation)
    {
        long start = stream.Position;
        IImageFormat format = Image.DetectFormat(configuration, stream) ?? throw NotAnImage(name, null);
        stream.Position = start;
        if (format is JpegFormat)
        {
            var (width, height, orientation) = SkiaJpegDecoder.Identify(stream, name);
            CheckHeader(stream, start, name, format, width, height, maxPixels);
            stream.Position = start;
            return ExifOrientation.Apply(SkiaJpegDecoder.Decode(stream, name), applyOrientation ? orientation : 1);
        }

        if (format is BmpFormat && ImageCompleteness.BmpPixelOffsetProblem(stream) is { } broken)
        {
            // ImageSharp's BMP header reader sizes the palette from the declared pixel-data offset before it checks
            // the offset against the file: fuzzing found a 29-byte file that made Identify allocate 973 MB. (The
            // rest of the structure is checked after the pixel budget, which names a bomb better.)
            throw PaliGemmaException.InFile(name, $"truncated or corrupt {format.Name} image: {broken}");
        }

        stream.Position = start;
        IImageInfo info;
        try
        {
            info = Image.Identify(configuration, stream) ?? throw NotAnImage(name, null);
        }
        catch (UnknownImageFormatException e)
        {
            throw NotAnImage(name, e);
        }
        catch (Exception e) when (e is ImageFormatException or NotSupportedException || ThrownByDecoderOnBadData(e))
        {
            // InvalidImageContentException (corrupt) is an ImageFormatException; NotSupportedException is a variant ImageSharp does not read.
            throw PaliGemmaException.InFile(name, $"cannot read the {format.Name} image header: {Describe(e)}", e);
        }

        CheckHeader(stream, start, name, format, info.Width, info.Height, maxPixels);
        stream.Position = start;
        RgbPicture picture = DecodeWithImageSharp(stream, name, format, info, maxPixels, configuration);
        if (picture.Width != info.Width || picture.Height != info.Height)
        {
            // What was decoded is what gets resized: the budget was checked on the header's size.
            throw PaliGemmaException.InFile(name, $"{format.Name} header declares {info.Width} x {info.Height} pixels, the decoder gave {picture.Width} x {picture.Height}");
        }

        return ExifOrientation.Apply(picture, applyOrientation ? OrientationOf(info) : 1);
    }

    /// <summary>The checks before any pixel is decoded: a non-empty size within the budget, and a whole file.</summary>
    private static void CheckHeader(Stream stream, long start, string name, IImageFormat format, int width, int height, long maxPixels)
    {
        if (width <= 0 || height <= 0)
        {
            throw PaliGemmaException.InFile(name, $"{format.Name} header declares an empty {width} x {height} image");
        }

        long pixels = (long)width * height;
        if (pixels > maxPixels)
        {
            throw PaliGemmaException.InFile(
                name,
                $"{format.Name} image is {width} x {height} = {pixels} pixels, over the pixel budget of {maxPixels} (a guard against decompression bombs: a small file can declare a huge image)");
        }

        if (pixels * 3 > Array.MaxLength)
        {
            throw PaliGemmaException.InFile(name, $"{format.Name} image is {width} x {height} pixels, too large to hold as one RGB buffer");
        }

        stream.Position = start;
        if (ImageCompleteness.FindProblem(stream, format) is { } missing)
        {
            throw PaliGemmaException.InFile(name, $"truncated or corrupt {format.Name} image: {missing}");
        }
    }

    private static RgbPicture DecodeWithImageSharp(Stream stream, string name, IImageFormat format, IImageInfo info, long maxPixels, Configuration configuration)
    {
        try
        {
            if (format is GifFormat)
            {
                // convert("RGB") of Pillow's P image gives the transparent index its palette colour; ImageSharp leaves
                // those pixels transparent black. Without the transparency flag it decodes the palette colour there.
                using var opaque = new MemoryStream(GifTransparency.WithoutFirstFrameTransparency(stream));
                using var gif = Image.Load<Rgb24>(configuration, opaque);
                return FromRgb24(gif);
            }

            var png = format is PngFormat ? info.Metadata.GetPngMetadata() : null;
            if (png is { BitDepth: PngBitDepth.Bit16, ColorType: PngColorType.Grayscale })
            {
                using var grey = Image.Load<L16>(configuration, stream);
                return ClippedGrey(grey);
            }

            if (png is { BitDepth: PngBitDepth.Bit16 })
            {
                using var deep = Image.Load<Rgb48>(configuration, stream);
                return HighBytes(deep);
            }

            using var image = Image.Load<Rgb24>(configuration, stream);
            return FromRgb24(image);
        }
        catch (UnknownImageFormatException e)
        {
            throw NotAnImage(name, e);
        }
        catch (InvalidMemoryOperationException e)
        {
            throw PaliGemmaException.InFile(name, $"decoding the {format.Name} image needs more memory than its {maxPixels}-pixel budget allows: {OneLine(e.Message)}", e);
        }
        catch (Exception e) when (e is ImageFormatException or NotSupportedException || ThrownByDecoderOnBadData(e))
        {
            throw PaliGemmaException.InFile(name, $"cannot decode the {format.Name} image, it is corrupt or truncated: {Describe(e)}", e);
        }
    }

    /// <summary>
    /// ImageSharp 2.x's decoders report some corrupt input not with <see cref="InvalidImageContentException"/> but
    /// with the exception an unchecked read runs into: a truncated RLE TGA gives <see cref="ArgumentException"/>, a
    /// TIFF without strips <see cref="InvalidOperationException"/>, other broken files
    /// <see cref="IndexOutOfRangeException"/>. Such an exception is the file's problem only when a format decoder
    /// threw it: the deepest frame outside the runtime's own libraries is ImageSharp's, called (through ImageSharp only) by
    /// a decoder in <c>SixLabors.ImageSharp.Formats</c> or a metadata parser in <c>SixLabors.ImageSharp.Metadata.Profiles</c>
    /// (EXIF is parsed when first read).
    /// Thrown from our code, or from ImageSharp's API checking our arguments, it is a bug and is not caught.
    /// </summary>
    internal static bool ThrownByDecoderOnBadData(Exception e)
    {
        if (e is not (ArgumentException or InvalidOperationException or IndexOutOfRangeException or NullReferenceException or ArithmeticException))
        {
            return false;
        }

        // Deepest frame first: skip the runtime's helpers, then the throw must be ImageSharp's and under one of its format decoders.
        var spaces = new System.Diagnostics.StackTrace(e, fNeedFileInfo: false).GetFrames()
            .Select(frame => frame.GetMethod()?.DeclaringType?.Namespace ?? "")
            .SkipWhile(IsRuntime)
            .ToList();
        return spaces.Count > 0
            && IsSixLabors(spaces[0])
            && spaces.TakeWhile(IsSixLabors).Any(space =>
                space.StartsWith("SixLabors.ImageSharp.Formats", StringComparison.Ordinal) || space.StartsWith("SixLabors.ImageSharp.Metadata.Profiles", StringComparison.Ordinal));
    }

    // ImageSharp's argument checks (Guard) live in the bare SixLabors namespace: a WebP header declaring a
    // 2.6 GB image-data chunk fails there, under the WebP decoder (found by PictureFuzzTests).
    private static bool IsSixLabors(string space) =>
        space == "SixLabors" || space.StartsWith("SixLabors.", StringComparison.Ordinal);

    // System.* and the runtime's own Internal.* helpers (Internal.Runtime.CompilerHelpers throws the JIT's bounds-check failures).
    private static bool IsRuntime(string space) =>
        space.Length == 0 || space == "System" || space.StartsWith("System.", StringComparison.Ordinal) || space.StartsWith("Internal.", StringComparison.Ordinal);

    private static string Describe(Exception e) =>
        e is ImageFormatException or NotSupportedException ? OneLine(e.Message) : $"the decoder failed with {e.GetType().Name}: {OneLine(e.Message)}";

    /// <summary>The EXIF Orientation value Pillow's exif_transpose would read (PNG eXIf, WebP and TIFF alike), or 1.</summary>
    private static int OrientationOf(IImageInfo info)
    {
        try
        {
            return info.Metadata.ExifProfile?.GetValue(ExifTag.Orientation) is { } tag ? tag.Value : 1;
        }
        catch (Exception e) when (ThrownByDecoderOnBadData(e))
        {
            // Pillow reads what it can of a broken EXIF block and warns; an unreadable one orients nothing.
            return 1;
        }
    }

    private static RgbPicture FromRgb24(Image<Rgb24> image)
    {
        var rgb = new byte[(long)image.Width * image.Height * 3];
        image.CopyPixelDataTo(rgb);
        return new RgbPicture(image.Width, image.Height, rgb);
    }

    private static RgbPicture HighBytes(Image<Rgb48> image)
    {
        var rgb = new byte[(long)image.Width * image.Height * 3];
        image.ProcessPixelRows(accessor =>
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
        return new RgbPicture(image.Width, image.Height, rgb);
    }

    private static RgbPicture ClippedGrey(Image<L16> image)
    {
        var rgb = new byte[(long)image.Width * image.Height * 3];
        image.ProcessPixelRows(accessor =>
        {
            for (int y = 0; y < accessor.Height; y++)
            {
                Span<L16> row = accessor.GetRowSpan(y);
                Span<byte> destination = rgb.AsSpan(y * row.Length * 3, row.Length * 3);
                for (int x = 0; x < row.Length; x++)
                {
                    byte value = (byte)Math.Min(row[x].PackedValue, (ushort)255);
                    destination[3 * x] = value;
                    destination[3 * x + 1] = value;
                    destination[3 * x + 2] = value;
                }
            }
        });
        return new RgbPicture(image.Width, image.Height, rgb);
    }

    private static PaliGemmaException NotAnImage(string name, Exception? inner)
    {
        const string Problem = $"not an image this program can read (it reads {ReadableFormats})";
        return inner is null ? PaliGemmaException.InFile(name, Problem) : PaliGemmaException.InFile(name, Problem, inner);
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    /// <summary>
    /// Gives back the buffers the kept configurations' allocators pool between pictures (ImageSharp keeps large
    /// ones in native memory); the next picture allocates afresh. Part of <see cref="Native.NativeHeap.ReleaseFreedMemory"/>.
    /// </summary>
    internal static void ReleaseRetainedMemory()
    {
        foreach (Configuration configuration in KeptConfigurations.Values)
        {
            configuration.MemoryAllocator.ReleaseRetainedResources();
        }
    }

    private static int AllocationLimitMegabytes(long maxPixels) =>
        (int)Math.Clamp(maxPixels * WidestPixelBytes / (1024 * 1024) + 1, MinAllocationLimitMegabytes, int.MaxValue);

    /// <summary>The configuration kept for this limit, made on first use while there is room; null past that.</summary>
    private static Configuration? KeptConfiguration(int limitMegabytes) =>
        KeptConfigurations.TryGetValue(limitMegabytes, out Configuration? kept) ? kept
        : KeptConfigurations.Count < MaxKeptConfigurations ? KeptConfigurations.GetOrAdd(limitMegabytes, CreateConfiguration)
        : null;

    private static Configuration CreateConfiguration(int limitMegabytes)
    {
        // A configuration of our own: Configuration.Default.Clone() would share, and let us mutate, the process-wide decoder table.
        // JPEG is in it for format detection only; its pixels come from libjpeg-turbo.
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
            // Second line of defence behind the header check, for buffers the header does not predict.
            MemoryAllocator = MemoryAllocator.Create(new MemoryAllocatorOptions { AllocationLimitMegabytes = limitMegabytes }),
        };

        // Image.open shows the first frame; decoding every frame of an animation would multiply the budget.
        configuration.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        configuration.ImageFormatsManager.SetDecoder(TiffFormat.Instance, new TiffDecoder { DecodingMode = FrameDecodingMode.First });
        return configuration;
    }
}
