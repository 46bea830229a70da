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
/// tower sees are the ones the reference implementation feeds it, not merely similar ones.
/// </summary>
/// <remarks>
/// Where decoding can differ from PIL: 16-bit channels keep their high byte, which is what PIL does for
/// 16-bit RGB/RGBA/LA PNGs; for 16-bit greyscale PNGs PIL clips every value above 255 to white, which
/// destroys the picture, so we keep the high byte there too. JPEGs go through ImageSharp's decoder rather
/// than libjpeg-turbo, whose IDCT and chroma upsampling can disagree by a level or two. EXIF orientation
/// is not applied, as neither <c>Image.open</c> nor the processor applies it. Animated images give their
/// first frame, as <c>Image.open</c> does.
/// </remarks>
public static class ImagePreprocessor
{
    /// <summary>
    /// The most pixels an image may declare. Headers are a few bytes but promise width x height pixels:
    /// a 100-byte PNG can claim 40000 x 40000 and make a decoder allocate gigabytes (a decompression bomb).
    /// 100 MP is above any camera or scan a user would caption (a 108 MP phone sensor aside) and costs at most
    /// 300 MB as RGB, which a machine that runs a 3B model has.
    /// </summary>
    public const long DefaultMaxPixels = 100_000_000;

    private const string ReadableFormats = "PNG, JPEG, GIF, BMP, TIFF, WebP, TGA or PBM";

    // Pillow: 8 bits for the result, 2 for overflow of filters with negative lobes, the rest for the fraction.
    private const int PrecisionBits = 32 - 8 - 2;

    // Pillow's BICUBIC support: the kernel is non-zero on (-2, 2).
    private const double BicubicSupport = 2.0;

    // The widest pixel ImageSharp's decoders work in is Rgba64: 8 bytes.
    private const long WidestPixelBytes = 8;

    // Small budgets still need room for decoders' fixed-size scratch buffers.
    private const int MinAllocationLimitMegabytes = 64;

    private static readonly Lazy<Configuration> DefaultConfiguration = new(() => CreateConfiguration(DefaultMaxPixels));

    /// <summary>Reads the image at <paramref name="path"/>; throws <see cref="PaliGemmaException"/> naming the file when it cannot.</summary>
    public static PreparedImage Load(string path, int size, long maxPixels = DefaultMaxPixels)
    {
        ArgumentNullException.ThrowIfNull(path);
        ValidateArguments(size, maxPixels);
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
            return Load(stream, path, size, maxPixels);
        }
    }

    /// <summary>
    /// Reads an image from <paramref name="stream"/> (from its current position); <paramref name="displayName"/>
    /// names it in error messages. Throws <see cref="PaliGemmaException"/> when the bytes are not a readable image.
    /// </summary>
    public static PreparedImage Load(Stream stream, string displayName, int size, long maxPixels = DefaultMaxPixels)
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
                return LoadSeekable(stream, displayName, size, maxPixels, configuration);
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
            return LoadSeekable(copy, displayName, size, maxPixels, configuration);
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

    private static PreparedImage LoadSeekable(Stream stream, string name, int size, long maxPixels, Configuration configuration)
    {
        using Image image = Decode(stream, name, maxPixels, configuration);
        int width = image.Width;
        int height = image.Height;
        byte[] rgb;
        if (image is Image<Rgb24> rgb24 && rgb24.DangerousTryGetSinglePixelMemory(out Memory<Rgb24> memory))
        {
            // The decoder's own buffer: no second full-size copy of a large photo.
            rgb = ResizeBicubic(MemoryMarshal.AsBytes(memory.Span), width, height, size, size);
        }
        else
        {
            rgb = ResizeBicubic(ToRgbBytes(image), width, height, size, size);
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
                $"{format} image is {width} x {height} = {pixels} pixels, over the pixel budget of {maxPixels}; refused before decoding (a small file can declare a huge image)");
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

    /// <summary>
    /// Pillow's <c>ImagingResample</c> with the BICUBIC filter for an 8-bit RGB image, box (0, 0, width, height):
    /// a horizontal pass into an 8-bit intermediate (only if the width changes), then a vertical pass (only if the
    /// height changes); with neither the pixels are copied unchanged.
    /// </summary>
    /// <param name="rgb">width * height * 3 bytes, row-major, interleaved.</param>
    internal static byte[] ResizeBicubic(ReadOnlySpan<byte> rgb, int width, int height, int outWidth, int outHeight)
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

        var vertical = Coefficients.Compute(height, outHeight);

        // Pillow resamples horizontally only the source rows the vertical pass will read.
        int firstRow = vertical.Bounds[0];
        int lastRow = vertical.Bounds[2 * (outHeight - 1)] + vertical.Bounds[2 * (outHeight - 1) + 1];
        byte[]? intermediate = null;
        ReadOnlySpan<byte> source = rgb;
        int sourceRowOffset = 0;
        if (needHorizontal)
        {
            var horizontal = Coefficients.Compute(width, outWidth);
            intermediate = new byte[(long)outWidth * (lastRow - firstRow) * 3];
            ResampleHorizontal(rgb, width, firstRow, lastRow - firstRow, outWidth, horizontal, intermediate);
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

    private static void ResampleHorizontal(ReadOnlySpan<byte> source, int width, int firstRow, int rows, int outWidth, Coefficients coefficients, Span<byte> destination)
    {
        int sourceStride = width * 3;
        int destinationStride = outWidth * 3;
        const int Half = 1 << (PrecisionBits - 1);
        for (int y = 0; y < rows; y++)
        {
            ReadOnlySpan<byte> sourceRow = source.Slice((firstRow + y) * sourceStride, sourceStride);
            Span<byte> destinationRow = destination.Slice(y * destinationStride, destinationStride);
            for (int xx = 0; xx < outWidth; xx++)
            {
                int min = coefficients.Bounds[2 * xx];
                int count = coefficients.Bounds[2 * xx + 1];
                ReadOnlySpan<int> k = coefficients.Weights.AsSpan(xx * coefficients.KernelSize, count);
                ReadOnlySpan<byte> pixels = sourceRow.Slice(min * 3, count * 3);
                int r = Half;
                int g = Half;
                int b = Half;
                for (int i = 0, p = 0; i < k.Length; i++, p += 3)
                {
                    int w = k[i];
                    r += pixels[p] * w;
                    g += pixels[p + 1] * w;
                    b += pixels[p + 2] * w;
                }

                destinationRow[3 * xx] = Clip8(r);
                destinationRow[3 * xx + 1] = Clip8(g);
                destinationRow[3 * xx + 2] = Clip8(b);
            }
        }
    }

    private static void ResampleVertical(ReadOnlySpan<byte> source, int width, int sourceRowOffset, Coefficients coefficients, Span<byte> destination)
    {
        int stride = width * 3;
        int outHeight = destination.Length / stride;
        // Pillow sums taps in ascending row order per pixel; summing whole rows in that same order gives identical
        // integers while reading memory sequentially.
        var sums = new int[stride];
        for (int yy = 0; yy < outHeight; yy++)
        {
            int min = coefficients.Bounds[2 * yy] - sourceRowOffset;
            int count = coefficients.Bounds[2 * yy + 1];
            ReadOnlySpan<int> k = coefficients.Weights.AsSpan(yy * coefficients.KernelSize, count);
            sums.AsSpan().Fill(1 << (PrecisionBits - 1));
            for (int i = 0; i < k.Length; i++)
            {
                int w = k[i];
                ReadOnlySpan<byte> row = source.Slice((min + i) * stride, stride);
                for (int j = 0; j < row.Length; j++)
                {
                    sums[j] += row[j] * w;
                }
            }

            Span<byte> destinationRow = destination.Slice(yy * stride, stride);
            for (int j = 0; j < destinationRow.Length; j++)
            {
                destinationRow[j] = Clip8(sums[j]);
            }
        }
    }

    /// <summary>Pillow's clip8: drop the fraction bits (arithmetic shift, so negatives stay negative) and clamp.</summary>
    private static byte Clip8(int value)
    {
        int v = value >> PrecisionBits;
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
    /// Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: for output pixel i, taps
    /// Bounds[2i] .. Bounds[2i] + Bounds[2i + 1] - 1 of the input, weighted by Weights[i * KernelSize ..] in
    /// fixed point with <see cref="PrecisionBits"/> fraction bits.
    /// </summary>
    private sealed record Coefficients(int KernelSize, int[] Bounds, int[] Weights)
    {
        public static Coefficients Compute(int inSize, int outSize)
        {
            // Pillow's box is float[4]; (double)(in1 - in0) is exact for any size an image can have.
            double scale = (double)(float)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            // Downscaling widens the kernel so every input pixel contributes (antialiasing).
            double support = BicubicSupport * filterScale;
            int kernelSize = (int)Math.Ceiling(support) * 2 + 1;
            var bounds = new int[outSize * 2];
            var weights = new int[(long)outSize * kernelSize];
            double[] taps = new double[kernelSize];
            for (int xx = 0; xx < outSize; xx++)
            {
                double center = 0.0 + (xx + 0.5) * scale;
                double ww = 0.0;
                double ss = 1.0 / filterScale;
                // C's (int) cast truncates toward zero, as C#'s does: that and the +0.5 are Pillow's rounding.
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
                for (int x = 0; x < xmax; x++)
                {
                    double w = Bicubic((x + xmin - center + 0.5) * ss);
                    taps[x] = w;
                    ww += w;
                }

                Span<int> fixedPoint = weights.AsSpan(xx * kernelSize, kernelSize);
                for (int x = 0; x < xmax; x++)
                {
                    double value = ww != 0.0 ? taps[x] / ww : taps[x];
                    fixedPoint[x] = value < 0
                        ? (int)(-0.5 + value * (1 << PrecisionBits))
                        : (int)(0.5 + value * (1 << PrecisionBits));
                }

                bounds[2 * xx] = xmin;
                bounds[2 * xx + 1] = xmax;
            }

            return new Coefficients(kernelSize, bounds, weights);
        }
    }
}
