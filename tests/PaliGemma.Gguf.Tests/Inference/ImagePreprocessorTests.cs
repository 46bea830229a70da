using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// The preprocessor against Hugging Face's SiglipImageProcessor (golden pixel_values), against Pillow itself,
/// and against the inputs it must refuse.
/// </summary>
public sealed class ImagePreprocessorTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>One uint8 level after (x/255 - 0.5)/0.5, plus float32 rounding of the reference.</summary>
    private const double MaxAbsTolerance = 2.0 / 255 + 1e-6;

    private const double MeanAbsTolerance = 1e-3;

    private readonly string _folder = Directory.CreateTempSubdirectory("paligemma-image-tests-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    public static TheoryData<string, int> GoldenCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var (image, _, resolutions) in GoldenData.PreprocessCases)
        {
            foreach (int resolution in resolutions)
            {
                data.Add(image, resolution);
            }
        }

        return data;
    }

    /// <summary>Pillow's resampler (the default) stays within one uint8 level of the reference.</summary>
    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void Pixel_values_match_the_reference_processor(string image, int size)
    {
        var (maxAbs, meanAbs, differing, total) = CompareWithGolden(image, size, BicubicVariant.Pillow);

        output.WriteLine($"{image} @ {size} (Pillow): max |Δ| = {maxAbs:E3}, mean |Δ| = {meanAbs:E3}, {differing} of {total} values differ ({(double)differing / total:P4})");
        Assert.InRange(maxAbs, 0, MaxAbsTolerance);
        Assert.InRange(meanAbs, 0, MeanAbsTolerance);
    }

    /// <summary>
    /// The golden data was made by transformers 5.x, whose image processors resize with torchvision: the same
    /// algorithm with int16 weights. That variant reproduces it bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void The_torchvision_variant_reproduces_the_reference_exactly(string image, int size)
    {
        var (maxAbs, meanAbs, differing, total) = CompareWithGolden(image, size, BicubicVariant.Torchvision);

        output.WriteLine($"{image} @ {size} (torchvision): max |Δ| = {maxAbs:E3}, mean |Δ| = {meanAbs:E3}, {differing} of {total} values differ");
        Assert.Equal(0, differing);
    }

    /// <summary>SHA-256 of Pillow 9.4's <c>Image.fromarray(Synthetic(w, h)).resize((s, s), Image.BICUBIC)</c> bytes.</summary>
    [Theory]
    [InlineData(37, 23, 16, "75cdd90702ea46086a1a38183d0621eb9dfecfb817eaa43451a3258e682062cb")]
    [InlineData(37, 23, 50, "c84f966f9b098672a9eb95483ea0cd9ba7d341f2ef20bd1c475b3edc1830bc8d")]
    [InlineData(451, 300, 224, "b1e40ab0f146e638ff5c906914d1e0e4915a9072be62ec33fb12927cb961c931")]
    [InlineData(1000, 37, 224, "d2be3eb9d73e2e9c9c30178e0fdc12d9a865c1febab73a5290f7c060f5611a8b")]
    [InlineData(224, 97, 224, "6b9177f160190b9143a0ab087f2c96646f4cd5d44cb74362fabf60cfcafbb587")]
    [InlineData(97, 224, 224, "277b9be5a3dfa6c74f33b302a40dc1a3cc2d6749d561cea4252f095e25491fdb")]
    [InlineData(8, 8, 448, "9fe4df311c31a2f63300221fb8cddee887d83a2913442d2d0ffae8687539a3a3")]
    public void The_resize_is_byte_identical_to_pillow(int width, int height, int size, string sha256)
    {
        byte[] resized = PillowBicubic.Resize(Synthetic(width, height), width, height, size, size);

        Assert.Equal(sha256, System.Convert.ToHexStringLower(SHA256.HashData(resized)));
    }

    [Fact]
    public void Golden_images_keep_their_original_size()
    {
        foreach (var (image, _, _) in GoldenData.PreprocessCases)
        {
            string path = GoldenData.ImagePath(image);
            var info = Image.Identify(path);
            var prepared = ImagePreprocessor.Load(path, 224);
            Assert.Equal((info.Width, info.Height), (prepared.OriginalWidth, prepared.OriginalHeight));
        }
    }

    [Fact]
    public void An_image_of_the_target_size_comes_back_byte_identical()
    {
        byte[] rgb = RandomBytes(224 * 224 * 3, seed: 1);
        string path = Path.Combine(_folder, "exact.png");
        using (var image = Image.LoadPixelData<Rgb24>(rgb, 224, 224))
        {
            image.SaveAsPng(path);
        }

        var prepared = ImagePreprocessor.Load(path, 224);

        Assert.Equal(rgb, prepared.Rgb);
        Assert.Equal((224, 224), (prepared.OriginalWidth, prepared.OriginalHeight));
    }

    [Fact]
    public void Alpha_is_dropped_not_composited()
    {
        const int Side = 40;
        byte[] rgba = RandomBytes(Side * Side * 4, seed: 2);
        // Make sure the extremes are there: fully transparent pixels keep their colour in PIL's convert("RGB").
        for (int i = 0; i < Side * Side; i += 7)
        {
            rgba[4 * i + 3] = (byte)(i % 2 == 0 ? 0 : 255);
        }

        byte[] rgb = new byte[Side * Side * 3];
        for (int i = 0; i < Side * Side; i++)
        {
            rgb[3 * i] = rgba[4 * i];
            rgb[3 * i + 1] = rgba[4 * i + 1];
            rgb[3 * i + 2] = rgba[4 * i + 2];
        }

        string rgbaPath = Path.Combine(_folder, "rgba.png");
        string rgbPath = Path.Combine(_folder, "rgb.png");
        using (var image = Image.LoadPixelData<Rgba32>(rgba, Side, Side))
        {
            image.SaveAsPng(rgbaPath, new PngEncoder { ColorType = PngColorType.RgbWithAlpha, BitDepth = PngBitDepth.Bit8, TransparentColorMode = PngTransparentColorMode.Preserve });
        }

        using (var image = Image.LoadPixelData<Rgb24>(rgb, Side, Side))
        {
            image.SaveAsPng(rgbPath);
        }

        Assert.Equal(rgb, ImagePreprocessor.Load(rgbaPath, Side).Rgb);
        Assert.Equal(ImagePreprocessor.Load(rgbPath, 17).Rgb, ImagePreprocessor.Load(rgbaPath, 17).Rgb);
        Assert.Equal(ImagePreprocessor.Load(rgbPath, 97).Rgb, ImagePreprocessor.Load(rgbaPath, 97).Rgb);
    }

    [Fact]
    public void A_header_declaring_a_huge_image_is_refused_before_decoding()
    {
        string path = Path.Combine(_folder, "bomb.png");
        File.WriteAllBytes(path, PngDeclaring(40_000, 40_000));

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var stopwatch = Stopwatch.StartNew();
        var e = Assert.Throws<PaliGemmaException>(() => ImagePreprocessor.Load(path, 224));
        stopwatch.Stop();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

        output.WriteLine($"{e.Message} ({stopwatch.ElapsedMilliseconds} ms, {allocated / 1024} KiB allocated)");
        Assert.Contains("pixel budget", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Contains("40000 x 40000", e.Message);
        Assert.InRange(allocated, 0, 32L << 20);
        Assert.InRange(stopwatch.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
    }

    /// <summary>
    /// ImageSharp's BMP header reader sizes the palette from the declared pixel-data offset before checking it against
    /// the file; PictureFuzzTests found these (seed 9g8ixvTYp5O4: 973 MB for a 29-byte file).
    /// </summary>
    [Theory]
    [InlineData("424d367d0000000000003604003a280000006000000048000000010008", "its pixel data starts at byte 973079606, past the end of the file (29 bytes)")]
    [InlineData("", "its pixel data starts at byte 2147418112, past the end")]
    public void A_bmp_whose_pixel_offset_lies_past_the_end_is_refused_before_imagesharp_allocates(string hex, string problem)
    {
        byte[] bytes = hex.Length > 0 ? Convert.FromHexString(hex) : WithPixelOffset(File.ReadAllBytes(DecodeGolden.Cases.First(c => c.Path.EndsWith(".bmp", StringComparison.Ordinal)).Path), 0x7FFF_0000);
        string path = Path.Combine(_folder, "offset.bmp");
        File.WriteAllBytes(path, bytes);

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<PaliGemmaException>(() => ImagePreprocessor.Load(path, 224));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

        output.WriteLine($"{e.Message} ({allocated / 1024} KiB allocated)");
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.InRange(allocated, 0, 8L << 20);

        static byte[] WithPixelOffset(byte[] bmp, uint offset)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bmp.AsSpan(10), offset);
            return bmp;
        }
    }

    [Fact]
    public void A_smaller_pixel_budget_refuses_an_ordinary_image()
    {
        string path = GoldenData.ImagePath("astronaut");

        var e = Assert.Throws<PaliGemmaException>(() => ImagePreprocessor.Load(path, 224, maxPixels: 512 * 512 - 1));

        Assert.Contains("pixel budget", e.Message);
        Assert.Equal(224, ImagePreprocessor.Load(path, 224, maxPixels: 512 * 512).Size);
    }

    [Fact]
    public void Pictures_decoded_under_the_same_pixel_budget_share_one_decoder_setup()
    {
        // A server decodes one picture per request under its own budget (not the default one): building the decoder
        // table and a pooled allocator each time cost some 20 KB of allocations per picture (seen: 292 KB per decode
        // then, 273 KB once the setup is kept), and left each picture a pool that starts empty.
        byte[] png;
        using (var image = new Image<Rgb24>(32, 24, new Rgb24(10, 200, 30)))
        using (var encoded = new MemoryStream())
        {
            image.SaveAsPng(encoded);
            png = encoded.ToArray();
        }

        long Allocated(long maxPixels)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            _ = ImagePreprocessor.Load(new MemoryStream(png), "the picture", 224, maxPixels);
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        _ = Allocated(ImagePreprocessor.DefaultMaxPixels); // code paths and static tables, once
        const long Budget = 33_333_333; // no other test uses it
        long first = Allocated(Budget);
        long second = Allocated(Budget);
        long third = Allocated(Budget);
        output.WriteLine($"allocated per decode: {first} B the first time, then {second} B and {third} B");

        Assert.InRange(third, second - 4096, second + 4096);
        Assert.True(first - second > 12 * 1024, $"the second decode allocated {second} B, the first {first} B: the setup was built again");
    }

    [Fact]
    public void A_text_file_named_png_is_refused()
    {
        string path = Path.Combine(_folder, "notes.png");
        File.WriteAllText(path, "This is not a picture.\nIt only has a picture's name.\n");

        var e = Assert.Throws<PaliGemmaException>(() => ImagePreprocessor.Load(path, 224));

        output.WriteLine(e.Message);
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void An_empty_file_is_refused()
    {
        string path = Path.Combine(_folder, "empty.jpg");
        File.WriteAllBytes(path, []);

        var e = Assert.Throws<PaliGemmaException>(() => ImagePreprocessor.Load(path, 224));

        output.WriteLine(e.Message);
        Assert.Contains(path, e.Message);
    }

    public static TheoryData<string> EncodedFormats() => new(Encoders.Keys);

    /// <summary>ImageSharp fills a cut-off image with black; PIL refuses it, and so must we.</summary>
    [Theory]
    [MemberData(nameof(EncodedFormats))]
    public void A_truncated_image_is_refused(string format)
    {
        byte[] whole = Encode(format);
        string wholePath = Path.Combine(_folder, "whole." + format);
        File.WriteAllBytes(wholePath, whole);
        Assert.Equal((451, 300), (ImagePreprocessor.Load(wholePath, 224).OriginalWidth, ImagePreprocessor.Load(wholePath, 224).OriginalHeight));

        foreach (double kept in new[] { 0.5, 0.9, 0.999 })
        {
            string path = Path.Combine(_folder, $"cut-{kept}.{format}");
            File.WriteAllBytes(path, whole.AsSpan(0, (int)(whole.Length * kept)).ToArray());

            var e = Assert.Throws<PaliGemmaException>(() => ImagePreprocessor.Load(path, 224));

            output.WriteLine(e.Message);
            Assert.Contains(path, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [Fact]
    public void A_missing_file_is_refused()
    {
        string path = Path.Combine(_folder, "does-not-exist.png");

        var e = Assert.Throws<PaliGemmaException>(() => ImagePreprocessor.Load(path, 224));

        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_non_seekable_stream_gives_the_same_pixels_as_the_file()
    {
        string path = GoldenData.ImagePath("chelsea");
        using var stream = new NonSeekableStream(File.ReadAllBytes(path));

        var fromStream = ImagePreprocessor.Load(stream, "chelsea", 224);

        Assert.Equal(ImagePreprocessor.Load(path, 224).Rgb, fromStream.Rgb);
        Assert.Equal((451, 300), (fromStream.OriginalWidth, fromStream.OriginalHeight));
    }

    [Fact]
    public void Resizing_a_flat_colour_keeps_it()
    {
        const int Width = 301;
        const int Height = 77;
        byte[] rgb = new byte[Width * Height * 3];
        for (int i = 0; i < rgb.Length; i += 3)
        {
            (rgb[i], rgb[i + 1], rgb[i + 2]) = ((byte)12, (byte)200, (byte)255);
        }

        foreach (var (variant, size) in new[] { BicubicVariant.Pillow, BicubicVariant.Torchvision }.SelectMany(v => new[] { 1, 16, 77, 224, 640 }.Select(s => (v, s))))
        {
            byte[] resized = PillowBicubic.Resize(rgb, Width, Height, size, size, variant);
            for (int i = 0; i < resized.Length; i += 3)
            {
                Assert.Equal((12, 200, 255), (resized[i], resized[i + 1], resized[i + 2]));
            }
        }
    }

    [Fact]
    public void Large_photos_resize_quickly()
    {
        foreach (var (width, height) in new[] { (512, 512), (4000, 3000) })
        {
            byte[] rgb = RandomBytes(width * height * 3, seed: 3);
            PillowBicubic.Resize(rgb, width, height, 224, 224);
            var stopwatch = Stopwatch.StartNew();
            PillowBicubic.Resize(rgb, width, height, 224, 224);
            stopwatch.Stop();
            output.WriteLine($"{width} x {height} -> 224 x 224: {stopwatch.Elapsed.TotalMilliseconds:F1} ms");
            // Loose: this catches an accidental quadratic loop, not a slow machine.
            Assert.InRange(stopwatch.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        }
    }

    private static (double MaxAbs, double MeanAbs, int Differing, int Total) CompareWithGolden(string image, int size, BicubicVariant variant)
    {
        var prepared = ImagePreprocessor.Load(GoldenData.ImagePath(image), size, variant: variant);
        float[] expected = GoldenData.Tensor($"pixel_values/{image}/{size}");

        Assert.Equal(size, prepared.Size);
        Assert.Equal(size * size * 3, prepared.Rgb.Length);
        Assert.Equal(3 * size * size, expected.Length);

        // The reference is channel-planar [3, S, S]; ours is interleaved.
        double maxAbs = 0;
        double sumAbs = 0;
        int differing = 0;
        int plane = size * size;
        for (int c = 0; c < 3; c++)
        {
            for (int p = 0; p < plane; p++)
            {
                double ours = (prepared.Rgb[3 * p + c] / 255.0 - 0.5) / 0.5;
                double delta = Math.Abs(ours - expected[c * plane + p]);
                maxAbs = Math.Max(maxAbs, delta);
                sumAbs += delta;
                if (delta > 1e-6)
                {
                    differing++;
                }
            }
        }

        return (maxAbs, sumAbs / expected.Length, differing, expected.Length);
    }

    /// <summary>Deterministic colours with hard black and white edges (overshoot and clipping); the same formula made the Pillow hashes.</summary>
    private static byte[] Synthetic(int width, int height)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int i = 3 * (y * width + x);
                for (int c = 0; c < 3; c++)
                {
                    rgb[i + c] = (byte)((x * 7 + y * 13 + c * 50 + (x * y % 17) * 9) & 255);
                }

                if ((x / 5 + y / 3) % 2 == 0)
                {
                    rgb[i] = rgb[i + 1] = rgb[i + 2] = 255;
                }

                if ((x + y) % 11 == 0)
                {
                    rgb[i] = rgb[i + 1] = rgb[i + 2] = 0;
                }
            }
        }

        return rgb;
    }

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>A well-formed PNG whose IHDR declares <paramref name="width"/> x <paramref name="height"/> 8-bit RGB, with a token IDAT.</summary>
    internal static byte[] PngDeclaring(int width, int height)
    {
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8; // bit depth
        header[9] = 2; // colour type: RGB
        WriteChunk(png, "IHDR", header);
        // zlib header and the start of a stored block: far less data than the header promises.
        WriteChunk(png, "IDAT", [0x78, 0x01, 0x00, 0x00, 0x00]);
        WriteChunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void WriteChunk(Stream png, string type, byte[] data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        png.Write(word);
        byte[] typeAndData = [.. Encoding.ASCII.GetBytes(type), .. data];
        png.Write(typeAndData);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32(typeAndData));
        png.Write(word);
    }

    /// <summary>The PNG/zlib CRC-32 (reflected polynomial 0xEDB88320); the test project does not reference System.IO.Hashing.</summary>
    private static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in bytes)
        {
            crc ^= b;
            for (int bit = 0; bit < 8; bit++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
            }
        }

        return ~crc;
    }

    private static readonly Dictionary<string, Action<Image, Stream>> Encoders = new()
    {
        ["png"] = (image, stream) => image.SaveAsPng(stream),
        ["jpg"] = (image, stream) => image.SaveAsJpeg(stream),
        ["gif"] = (image, stream) => image.SaveAsGif(stream),
        ["bmp"] = (image, stream) => image.SaveAsBmp(stream),
        ["webp"] = (image, stream) => image.SaveAsWebp(stream),
        ["tiff"] = (image, stream) => image.SaveAsTiff(stream),
        ["tga"] = (image, stream) => image.SaveAsTga(stream),
    };

    private static byte[] Encode(string format)
    {
        using var image = Image.Load<Rgb24>(GoldenData.ImagePath("chelsea"));
        using var stream = new MemoryStream();
        Encoders[format](image, stream);
        return stream.ToArray();
    }

    private sealed class NonSeekableStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override long Seek(long offset, SeekOrigin loc) => throw new NotSupportedException();
    }
}
