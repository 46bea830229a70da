using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
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

    // Pillow: 8 bits for the result, 2 for overflow of filters with negative lobes, the rest for the fraction.
    private const int PillowPrecisionBits = 32 - 8 - 2;

    // Pillow's BICUBIC support: the kernel is non-zero on (-2, 2).
    private const double BicubicSupport = 2.0;

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
            rgb = ResizeBicubic(MemoryMarshal.AsBytes(memory.Span), width, height, size, size, variant);
        }
        else
        {
            rgb = ResizeBicubic(ToRgbBytes(image), width, height, size, size, variant);
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
            missing = Completeness.FindProblem(stream, format);
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

    /// <summary>
    /// ImageSharp 2.x decodes a truncated PNG, JPEG, GIF, BMP or WebP without complaint and leaves the missing rows
    /// black, where PIL refuses the file ("image file is truncated"). These walk the file's structure to its end
    /// without decoding pixels. TIFF and TGA decoders already fail on truncation; PBM is not checked.
    /// </summary>
    private static class Completeness
    {
        /// <summary>What is missing from the image starting at the stream's position, or null when it is whole.</summary>
        public static string? FindProblem(Stream stream, IImageFormat format)
        {
            var reader = new ByteReader(stream);
            return format switch
            {
                PngFormat => Png(reader),
                JpegFormat => Jpeg(reader),
                GifFormat => Gif(reader),
                BmpFormat => Bmp(reader),
                WebpFormat => Webp(reader),
                _ => null,
            };
        }

        private static string? Png(ByteReader reader)
        {
            Span<byte> header = stackalloc byte[8];
            if (!reader.TryRead(header))
            {
                return "it ends inside the signature";
            }

            // PIL reads chunks up to the end of the pixel data; IEND, the last chunk, proves nothing was cut.
            while (reader.TryRead(header))
            {
                uint length = BinaryPrimitives.ReadUInt32BigEndian(header);
                string type = Encoding.ASCII.GetString(header[4..]);
                if (type == "IEND")
                {
                    return null;
                }

                if (length > int.MaxValue)
                {
                    return $"chunk '{type}' declares {length} bytes, more than PNG allows";
                }

                if (!reader.TrySkip(length + 4L))
                {
                    return $"it ends inside chunk '{type}'";
                }
            }

            return "it ends before the IEND chunk";
        }

        private static string? Jpeg(ByteReader reader)
        {
            if (reader.ReadByte() != 0xFF || reader.ReadByte() != 0xD8)
            {
                return "it does not start with the start-of-image marker";
            }

            while (true)
            {
                int marker = reader.ReadByte();
                if (marker < 0)
                {
                    return "it ends before the end-of-image marker";
                }

                if (marker != 0xFF)
                {
                    return $"byte 0x{marker:X2} where a marker should be";
                }

                // Any number of 0xFF fill bytes may precede a marker code.
                do
                {
                    marker = reader.ReadByte();
                }
                while (marker == 0xFF);

                if (marker < 0)
                {
                    return "it ends before the end-of-image marker";
                }

                if (marker == 0xD9)
                {
                    return null;
                }

                // TEM and RST0..7 stand alone; every other marker is followed by a length that includes itself.
                if (marker == 0x01 || marker is >= 0xD0 and <= 0xD7)
                {
                    continue;
                }

                int high = reader.ReadByte();
                int low = reader.ReadByte();
                if (low < 0)
                {
                    return "it ends inside a marker segment";
                }

                int length = (high << 8) | low;
                if (length < 2 || !reader.TrySkip(length - 2))
                {
                    return "it ends inside a marker segment";
                }

                if (marker == 0xDA && !SkipEntropyCodedData(reader))
                {
                    return "it ends inside the compressed scan data";
                }
            }
        }

        /// <summary>Skips a scan's data up to the next marker (left unread); false at the end of the file.</summary>
        private static bool SkipEntropyCodedData(ByteReader reader)
        {
            while (true)
            {
                int b = reader.ReadByte();
                if (b < 0)
                {
                    return false;
                }

                if (b != 0xFF)
                {
                    continue;
                }

                int next = reader.PeekByte();
                if (next < 0)
                {
                    return false;
                }

                // 0xFF 0x00 is a stuffed data byte and RSTn sits inside the scan; anything else ends it.
                if (next == 0x00 || next is >= 0xD0 and <= 0xD7)
                {
                    reader.ReadByte();
                }
                else if (next != 0xFF)
                {
                    reader.Unread();
                    return true;
                }
            }
        }

        private static string? Gif(ByteReader reader)
        {
            Span<byte> screen = stackalloc byte[13];
            if (!reader.TryRead(screen))
            {
                return "it ends inside the header";
            }

            if (!SkipColorTable(reader, screen[10]))
            {
                return "it ends inside the global colour table";
            }

            // Only the first frame is decoded (as by Image.open), so only it has to be whole.
            Span<byte> descriptor = stackalloc byte[9];
            while (true)
            {
                switch (reader.ReadByte())
                {
                    case 0x21:
                        if (reader.ReadByte() < 0 || !SkipSubBlocks(reader))
                        {
                            return "it ends inside an extension block";
                        }

                        break;
                    case 0x2C:
                        if (!reader.TryRead(descriptor) || !SkipColorTable(reader, descriptor[8]) || reader.ReadByte() < 0 || !SkipSubBlocks(reader))
                        {
                            return "it ends inside the first frame";
                        }

                        return null;
                    case 0x3B:
                        return "it has no frame";
                    case -1:
                        return "it ends before the first frame";
                    case int other:
                        return $"unknown block 0x{other:X2}";
                }
            }
        }

        private static bool SkipColorTable(ByteReader reader, byte flags) =>
            (flags & 0x80) == 0 || reader.TrySkip(3L << ((flags & 7) + 1));

        private static bool SkipSubBlocks(ByteReader reader)
        {
            while (true)
            {
                int size = reader.ReadByte();
                if (size <= 0)
                {
                    return size == 0;
                }

                if (!reader.TrySkip(size))
                {
                    return false;
                }
            }
        }

        private static string? Bmp(ByteReader reader)
        {
            Span<byte> header = stackalloc byte[38];
            int read = reader.ReadAtMost(header);
            if (read < 26)
            {
                return "it ends inside the header";
            }

            long pixelOffset = BinaryPrimitives.ReadUInt32LittleEndian(header[10..]);
            bool core = BinaryPrimitives.ReadUInt32LittleEndian(header[14..]) == 12;
            if (!core && read < 38)
            {
                return "it ends inside the header";
            }

            long width = core ? BinaryPrimitives.ReadUInt16LittleEndian(header[18..]) : BinaryPrimitives.ReadInt32LittleEndian(header[18..]);
            long height = core ? BinaryPrimitives.ReadUInt16LittleEndian(header[20..]) : BinaryPrimitives.ReadInt32LittleEndian(header[22..]);
            int bitsPerPixel = BinaryPrimitives.ReadUInt16LittleEndian(header[(core ? 24 : 28)..]);
            uint compression = core ? 0 : BinaryPrimitives.ReadUInt32LittleEndian(header[30..]);
            uint imageSize = core ? 0 : BinaryPrimitives.ReadUInt32LittleEndian(header[34..]);

            // Uncompressed rows (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS) have a known size; compressed ones only a declared one.
            long pixelBytes = compression is 0 or 3 or 6
                ? (Math.Abs(width) * bitsPerPixel + 31) / 32 * 4 * Math.Abs(height)
                : imageSize;
            return reader.Length < pixelOffset + pixelBytes
                ? $"the pixel data needs {pixelOffset + pixelBytes} bytes, the file has {reader.Length}"
                : null;
        }

        private static string? Webp(ByteReader reader)
        {
            Span<byte> header = stackalloc byte[8];
            if (!reader.TryRead(header))
            {
                return "it ends inside the RIFF header";
            }

            long declared = 8L + BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
            return reader.Length < declared ? $"its RIFF header declares {declared} bytes, the file has {reader.Length}" : null;
        }
    }

    /// <summary>Buffered forward reading of a seekable stream, with skips that seek; lengths are from the start position.</summary>
    private sealed class ByteReader(Stream stream)
    {
        private readonly long _start = stream.Position;
        private readonly byte[] _buffer = new byte[64 * 1024];
        private int _count;
        private int _next;

        public long Length => stream.Length - _start;

        public int ReadByte()
        {
            if (_next == _count && !Fill())
            {
                return -1;
            }

            return _buffer[_next++];
        }

        public int PeekByte()
        {
            if (_next == _count && !Fill())
            {
                return -1;
            }

            return _buffer[_next];
        }

        /// <summary>Steps back over the byte just read; valid once after <see cref="ReadByte"/>.</summary>
        public void Unread() => _next--;

        public bool TryRead(Span<byte> destination) => ReadAtMost(destination) == destination.Length;

        public int ReadAtMost(Span<byte> destination)
        {
            int done = 0;
            while (done < destination.Length)
            {
                int b = ReadByte();
                if (b < 0)
                {
                    break;
                }

                destination[done++] = (byte)b;
            }

            return done;
        }

        public bool TrySkip(long count)
        {
            long buffered = _count - _next;
            if (count <= buffered)
            {
                _next += (int)count;
                return true;
            }

            long target = stream.Position + (count - buffered);
            _next = _count = 0;
            if (target > stream.Length)
            {
                return false;
            }

            stream.Position = target;
            return true;
        }

        private bool Fill()
        {
            // Keep the last byte so that Unread works across a refill.
            if (_count > 0)
            {
                _buffer[0] = _buffer[_count - 1];
                _next = 1;
                _count = 1;
            }

            int read = stream.Read(_buffer, _count, _buffer.Length - _count);
            if (read == 0)
            {
                _next = _count;
                return false;
            }

            _count += read;
            return true;
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

    /// <summary>
    /// Pillow's <c>ImagingResample</c> with the BICUBIC filter for an 8-bit RGB image, box (0, 0, width, height):
    /// a horizontal pass into an 8-bit intermediate (only if the width changes), then a vertical pass (only if the
    /// height changes); with neither the pixels are copied unchanged. <paramref name="variant"/> picks the fixed-point
    /// weights: Pillow's, or torchvision's port of the same algorithm.
    /// </summary>
    /// <param name="rgb">width * height * 3 bytes, row-major, interleaved.</param>
    internal static byte[] ResizeBicubic(ReadOnlySpan<byte> rgb, int width, int height, int outWidth, int outHeight, BicubicVariant variant = BicubicVariant.Pillow)
    {
        if (rgb.Length != (long)width * height * 3)
        {
            throw new ArgumentException($"Expected {width} x {height} x 3 bytes, got {rgb.Length}.", nameof(rgb));
        }

        bool needHorizontal = outWidth != width;
        bool needVertical = outHeight != height;
        if (!needHorizontal && !needVertical)
        {
            return rgb.ToArray();
        }

        var vertical = Coefficients.Compute(height, outHeight, variant);

        // Pillow resamples horizontally only the source rows the vertical pass will read.
        int firstRow = vertical.Bounds[0];
        int lastRow = vertical.Bounds[2 * (outHeight - 1)] + vertical.Bounds[2 * (outHeight - 1) + 1];
        ReadOnlySpan<byte> source = rgb;
        int sourceRowOffset = 0;
        if (needHorizontal)
        {
            var horizontal = Coefficients.Compute(width, outWidth, variant);
            var intermediate = new byte[(long)outWidth * (lastRow - firstRow) * 3];
            ResampleHorizontal(rgb, width, firstRow, lastRow - firstRow, horizontal, intermediate);
            if (!needVertical)
            {
                return intermediate;
            }

            source = intermediate;
            sourceRowOffset = firstRow;
        }

        var output = new byte[(long)outWidth * outHeight * 3];
        ResampleVertical(source, outWidth, sourceRowOffset, vertical, output);
        return output;
    }

    private static void ResampleHorizontal(ReadOnlySpan<byte> source, int width, int firstRow, int rows, Coefficients coefficients, Span<byte> destination)
    {
        int outWidth = coefficients.Bounds.Length / 2;
        int sourceStride = width * 3;
        int destinationStride = outWidth * 3;
        int half = 1 << (coefficients.Precision - 1);
        for (int y = 0; y < rows; y++)
        {
            ReadOnlySpan<byte> sourceRow = source.Slice((firstRow + y) * sourceStride, sourceStride);
            Span<byte> destinationRow = destination.Slice(y * destinationStride, destinationStride);
            for (int xx = 0; xx < outWidth; xx++)
            {
                int min = coefficients.Bounds[2 * xx];
                int count = coefficients.Bounds[2 * xx + 1];
                ReadOnlySpan<int> k = coefficients.Weights.AsSpan(xx * coefficients.KernelSize, count);
                // Sliced to exactly the taps, so the JIT can drop the bounds checks in the loop below.
                ReadOnlySpan<byte> r = sourceRow.Slice(min * 3, count * 3);
                int sr = half;
                int sg = half;
                int sb = half;
                for (int i = 0; i < k.Length; i++)
                {
                    int w = k[i];
                    ReadOnlySpan<byte> pixel = r.Slice(3 * i, 3);
                    sr += pixel[0] * w;
                    sg += pixel[1] * w;
                    sb += pixel[2] * w;
                }

                destinationRow[3 * xx] = Clip8(sr, coefficients.Precision);
                destinationRow[3 * xx + 1] = Clip8(sg, coefficients.Precision);
                destinationRow[3 * xx + 2] = Clip8(sb, coefficients.Precision);
            }
        }
    }

    private static void ResampleVertical(ReadOnlySpan<byte> source, int width, int sourceRowOffset, Coefficients coefficients, Span<byte> destination)
    {
        int stride = width * 3;
        int outHeight = coefficients.Bounds.Length / 2;
        // Pillow sums the taps of each pixel in ascending row order; summing whole rows in that same order gives the
        // same integers while reading memory sequentially.
        var sums = new int[stride];
        for (int yy = 0; yy < outHeight; yy++)
        {
            int min = coefficients.Bounds[2 * yy] - sourceRowOffset;
            int count = coefficients.Bounds[2 * yy + 1];
            ReadOnlySpan<int> k = coefficients.Weights.AsSpan(yy * coefficients.KernelSize, count);
            sums.AsSpan().Fill(1 << (coefficients.Precision - 1));
            for (int i = 0; i < k.Length; i++)
            {
                int w = k[i];
                ReadOnlySpan<byte> row = source.Slice((min + i) * stride, stride);
                Span<int> s = sums.AsSpan(0, row.Length);
                for (int j = 0; j < row.Length; j++)
                {
                    s[j] += row[j] * w;
                }
            }

            Span<byte> destinationRow = destination.Slice(yy * stride, stride);
            for (int j = 0; j < destinationRow.Length; j++)
            {
                destinationRow[j] = Clip8(sums[j], coefficients.Precision);
            }
        }
    }

    /// <summary>Pillow's clip8: drop the fraction bits (arithmetic shift, so negatives stay negative) and clamp.</summary>
    private static byte Clip8(int value, int precision)
    {
        int v = value >> precision;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    /// <summary>Pillow's bicubic_filter with a = -0.5, written in the same operation order so the doubles match.</summary>
    private static double Bicubic(double x)
    {
        const double A = -0.5;
        if (x < 0.0)
        {
            x = -x;
        }

        if (x < 1.0)
        {
            return ((A + 2.0) * x - (A + 3.0)) * x * x + 1;
        }

        if (x < 2.0)
        {
            return (((x - 5) * x + 8) * x - 4) * A;
        }

        return 0.0;
    }

    /// <summary>
    /// Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: output pixel i reads input pixels
    /// Bounds[2i] .. Bounds[2i] + Bounds[2i + 1] - 1, weighted by Weights[i * KernelSize ..] in fixed point with
    /// <see cref="Precision"/> fraction bits.
    /// </summary>
    private sealed record Coefficients(int KernelSize, int[] Bounds, int[] Weights, int Precision)
    {
        public static Coefficients Compute(int inSize, int outSize, BicubicVariant variant)
        {
            // Pillow's box is float[4]; (double)(in1 - in0) is exact for any size an image can have.
            double scale = (double)(float)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            // Downscaling widens the kernel so every input pixel contributes (antialiasing).
            double support = BicubicSupport * filterScale;
            int kernelSize = (int)Math.Ceiling(support) * 2 + 1;
            var bounds = new int[outSize * 2];
            var normalized = new double[(long)outSize * kernelSize];
            for (int xx = 0; xx < outSize; xx++)
            {
                double center = 0.0 + (xx + 0.5) * scale;
                double ww = 0.0;
                double ss = 1.0 / filterScale;
                // C's (int) truncates toward zero, as C#'s does: with the +0.5 that is Pillow's rounding.
                int xmin = (int)(center - support + 0.5);
                if (xmin < 0)
                {
                    xmin = 0;
                }

                int xmax = (int)(center + support + 0.5);
                if (xmax > inSize)
                {
                    xmax = inSize;
                }

                xmax -= xmin;
                Span<double> k = normalized.AsSpan(xx * kernelSize, kernelSize);
                for (int x = 0; x < xmax; x++)
                {
                    double w = Bicubic((x + xmin - center + 0.5) * ss);
                    k[x] = w;
                    ww += w;
                }

                for (int x = 0; x < xmax; x++)
                {
                    if (ww != 0.0)
                    {
                        k[x] /= ww;
                    }
                }

                bounds[2 * xx] = xmin;
                bounds[2 * xx + 1] = xmax;
            }

            int precision = variant == BicubicVariant.Pillow ? PillowPrecisionBits : TorchvisionPrecision(normalized);
            var weights = new int[normalized.Length];
            for (int i = 0; i < normalized.Length; i++)
            {
                double value = normalized[i];
                weights[i] = value < 0
                    ? (int)(-0.5 + value * (1 << precision))
                    : (int)(0.5 + value * (1 << precision));
            }

            return new Coefficients(kernelSize, bounds, weights, precision);
        }

        /// <summary>
        /// torchvision keeps weights in int16 for its AVX2 kernels: it takes the most fraction bits (at most 22) for
        /// which the largest weight still fits (ATen's _compute_index_ranges_int16_weights).
        /// </summary>
        private static int TorchvisionPrecision(ReadOnlySpan<double> weights)
        {
            double max = weights[0];
            foreach (double w in weights)
            {
                max = Math.Max(max, w);
            }

            const int MaxPrecision = 22;
            int precision;
            for (precision = 0; precision < MaxPrecision; precision++)
            {
                if ((int)(0.5 + max * (1 << (precision + 1))) >= 1 << 15)
                {
                    break;
                }
            }

            return precision;
        }
    }
}

/// <summary>Which implementation of the same bicubic resampler to reproduce bit for bit; they differ only in fixed-point rounding.</summary>
public enum BicubicVariant
{
    /// <summary>
    /// Pillow's <c>Image.resize(BICUBIC)</c>, 22 fraction bits: what Hugging Face's slow (PIL) image processors do,
    /// the default in transformers 4.x.
    /// </summary>
    Pillow,

    /// <summary>
    /// torchvision's uint8 antialiased bicubic resize, Pillow's algorithm with int16 weights (about 15 fraction bits):
    /// what the fast image processors do, the default in transformers 5.x. Differs from Pillow by one level on a
    /// fraction of a percent of the values.
    /// </summary>
    Torchvision,
}
