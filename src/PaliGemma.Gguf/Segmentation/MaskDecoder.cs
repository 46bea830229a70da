using System.Numerics;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Gguf.Segmentation;

/// <summary>
/// big_vision's VQ-VAE mask decoder for PaliGemma's <c>&lt;seg&gt;</c> codes: 16 codebook indices -> a 64 x 64
/// soft mask (logit-like values; 0 is the object's edge). Load it once from <c>vae-oid.npz</c> and reuse it; decoding
/// is thread-safe.
/// </summary>
/// <remarks>
/// The layers (PyTorch key names of the published file): codebook lookup into a 4 x 4 x 512 grid, code k at row
/// k / 4, column k % 4; a 1x1 convolution to 128 channels and ReLU; two residual blocks (3x3, ReLU, 3x3, ReLU, 1x1,
/// added to the block's input, no activation after the sum); four 4x4 stride-2 transposed convolutions (PyTorch's
/// ConvTranspose2d(padding=1), each followed by ReLU) to 16 x 64 x 64; a 1x1 convolution to one channel. It works
/// channels-last, so that every inner loop is a multiply-add over contiguous output channels; the weights are
/// rearranged once at load.
/// </remarks>
public sealed class MaskDecoder
{
    /// <summary>The side of the decoded mask.</summary>
    public const int MaskSize = 64;

    /// <summary>Codes per mask.</summary>
    public const int CodeCount = 16;

    /// <summary>The codebook's size: valid codes are 0 .. CodebookSize - 1.</summary>
    public const int CodebookSize = 128;

    private const int GridSize = 4;
    private const int EmbeddingWidth = 512;
    private const int Hidden = 128;
    private const string CodebookKey = "_vq_vae._embedding";

    private readonly float[] _codebook;
    private readonly Convolution _input;
    private readonly (Convolution First, Convolution Second, Convolution Project)[] _residualBlocks;
    private readonly TransposedConvolution[] _upsampling;
    private readonly Convolution _output;

    private MaskDecoder(string path, float[] codebook, Convolution input, (Convolution, Convolution, Convolution)[] residualBlocks, TransposedConvolution[] upsampling, Convolution output)
    {
        SourcePath = path;
        _codebook = codebook;
        _input = input;
        _residualBlocks = residualBlocks;
        _upsampling = upsampling;
        _output = output;
    }

    /// <summary>The file the weights came from.</summary>
    public string SourcePath { get; }

    /// <summary>The keys of <c>vae-oid.npz</c> the decoder reads; the file's other keys (the encoder's) are ignored.</summary>
    public static IReadOnlyList<string> Keys { get; } = BuildKeyList();

    /// <summary>
    /// Reads the decoder's weights from a <c>vae-oid.npz</c> (or any .npz with the same keys and shapes). Throws
    /// <see cref="PaliGemmaException"/> naming the file and the key for a missing key, a wrong shape or dtype, or a
    /// damaged file.
    /// </summary>
    public static MaskDecoder Load(string npzPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(npzPath);
        using var archive = NpzArchive.Open(npzPath);
        float[] codebook = Read(archive, CodebookKey, CodebookSize, EmbeddingWidth);
        var input = Convolution.Load(archive, "decoder.0", EmbeddingWidth, Hidden, 1);
        var blocks = new[] { "decoder.2.net", "decoder.3.net" }
            .Select(name => (
                Convolution.Load(archive, $"{name}.0", Hidden, Hidden, 3),
                Convolution.Load(archive, $"{name}.2", Hidden, Hidden, 3),
                Convolution.Load(archive, $"{name}.4", Hidden, Hidden, 1)))
            .ToArray();
        var upsampling = new[]
        {
            TransposedConvolution.Load(archive, "decoder.4", Hidden, 128),
            TransposedConvolution.Load(archive, "decoder.6", 128, 64),
            TransposedConvolution.Load(archive, "decoder.8", 64, 32),
            TransposedConvolution.Load(archive, "decoder.10", 32, 16),
        };
        var output = Convolution.Load(archive, "decoder.12", 16, 1, 1);
        return new MaskDecoder(npzPath, codebook, input, blocks, upsampling, output);
    }

    /// <summary>
    /// The 64 x 64 mask for <paramref name="codes"/> (16 values in 0..127, in the order the model wrote them),
    /// row-major, row 0 at the top.
    /// </summary>
    public float[] Decode(ReadOnlySpan<int> codes)
    {
        if (codes.Length != CodeCount)
        {
            throw new ArgumentException($"A mask takes {CodeCount} codes, got {codes.Length}.", nameof(codes));
        }

        // Channels-last 4 x 4 x 512: pixel k is codebook row codes[k], which is how big_vision reshapes the rows.
        var x = new float[GridSize * GridSize * EmbeddingWidth];
        for (int k = 0; k < CodeCount; k++)
        {
            int code = codes[k];
            if ((uint)code >= CodebookSize)
            {
                throw new ArgumentOutOfRangeException(nameof(codes), code, $"Segment codes are 0..{CodebookSize - 1}.");
            }

            _codebook.AsSpan(code * EmbeddingWidth, EmbeddingWidth).CopyTo(x.AsSpan(k * EmbeddingWidth));
        }

        x = _input.Apply(x, GridSize, relu: true);
        foreach (var (first, second, project) in _residualBlocks)
        {
            float[] h = first.Apply(x, GridSize, relu: true);
            h = second.Apply(h, GridSize, relu: true);
            h = project.Apply(h, GridSize, relu: false);
            for (int i = 0; i < x.Length; i++)
            {
                x[i] += h[i];
            }
        }

        int size = GridSize;
        foreach (TransposedConvolution layer in _upsampling)
        {
            x = layer.Apply(x, size);
            size *= 2;
        }

        return _output.Apply(x, size, relu: false);
    }

    /// <summary>
    /// <paramref name="objects"/> (parsed against the same picture size) with <see cref="DetectedObject.Mask"/> set on
    /// every valid segmentation group; detections and invalid boxes are returned unchanged, as the demo gives them no mask.
    /// </summary>
    public IReadOnlyList<DetectedObject> AddMasks(IReadOnlyList<DetectedObject> objects, int pictureWidth, int pictureHeight)
    {
        ArgumentNullException.ThrowIfNull(objects);
        return objects
            .Select(found => found is { IsValid: true, SegmentCodes: { } codes }
                ? found with { Mask = ObjectMask.Place(Decode(codes), found.Box, pictureWidth, pictureHeight) }
                : found)
            .ToList();
    }

    private static float[] Read(NpzArchive archive, string key, params int[] shape)
    {
        var (values, actual) = archive.ReadFloat32(key);
        if (!actual.AsSpan().SequenceEqual(shape))
        {
            throw archive.Problem(key, $"has shape ({string.Join(", ", actual)}), expected ({string.Join(", ", shape)})");
        }

        return values;
    }

    private static List<string> BuildKeyList()
    {
        var names = new List<string> { "decoder.0", "decoder.2.net.0", "decoder.2.net.2", "decoder.2.net.4", "decoder.3.net.0", "decoder.3.net.2", "decoder.3.net.4", "decoder.4", "decoder.6", "decoder.8", "decoder.10", "decoder.12" };
        return [CodebookKey, .. names.SelectMany(n => new[] { $"{n}.weight", $"{n}.bias" })];
    }

    /// <summary>acc += scale * values, vectorised: the one inner loop of every layer.</summary>
    private static void MultiplyAdd(Span<float> accumulator, ReadOnlySpan<float> values, float scale)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && values.Length >= Vector<float>.Count)
        {
            var s = new Vector<float>(scale);
            for (; i <= values.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var sum = new Vector<float>(accumulator[i..]) + (s * new Vector<float>(values[i..]));
                sum.CopyTo(accumulator[i..]);
            }
        }

        for (; i < values.Length; i++)
        {
            accumulator[i] += scale * values[i];
        }
    }

    private static void Relu(Span<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = Math.Max(values[i], 0f);
        }
    }

    /// <summary>A k x k convolution, stride 1, zero padding (k - 1) / 2, on a square channels-last image.</summary>
    private sealed class Convolution(int inputs, int outputs, int kernel, float[] weights, float[] bias)
    {
        /// <summary>Weights as [dy][dx][in][out], rearranged from PyTorch's [out][in][dy][dx].</summary>
        private readonly float[] _weights = weights;

        public static Convolution Load(NpzArchive archive, string name, int inputs, int outputs, int kernel)
        {
            float[] torch = Read(archive, $"{name}.weight", outputs, inputs, kernel, kernel);
            float[] bias = Read(archive, $"{name}.bias", outputs);
            var weights = new float[torch.Length];
            for (int o = 0; o < outputs; o++)
            {
                for (int i = 0; i < inputs; i++)
                {
                    for (int dy = 0; dy < kernel; dy++)
                    {
                        for (int dx = 0; dx < kernel; dx++)
                        {
                            weights[(((dy * kernel) + dx) * inputs + i) * outputs + o] = torch[(((o * inputs) + i) * kernel + dy) * kernel + dx];
                        }
                    }
                }
            }

            return new Convolution(inputs, outputs, kernel, weights, bias);
        }

        public float[] Apply(float[] input, int size, bool relu)
        {
            int padding = (kernel - 1) / 2;
            var output = new float[size * size * outputs];
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    Span<float> pixel = output.AsSpan((y * size + x) * outputs, outputs);
                    bias.CopyTo(pixel);
                    for (int dy = 0; dy < kernel; dy++)
                    {
                        int sy = y + dy - padding;
                        if ((uint)sy >= (uint)size)
                        {
                            continue;
                        }

                        for (int dx = 0; dx < kernel; dx++)
                        {
                            int sx = x + dx - padding;
                            if ((uint)sx >= (uint)size)
                            {
                                continue;
                            }

                            ReadOnlySpan<float> source = input.AsSpan((sy * size + sx) * inputs, inputs);
                            ReadOnlySpan<float> taps = _weights.AsSpan(((dy * kernel) + dx) * inputs * outputs, inputs * outputs);
                            for (int i = 0; i < inputs; i++)
                            {
                                MultiplyAdd(pixel, taps.Slice(i * outputs, outputs), source[i]);
                            }
                        }
                    }
                }
            }

            if (relu)
            {
                Relu(output);
            }

            return output;
        }
    }

    /// <summary>
    /// PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1) followed by ReLU: n x n -> 2n x 2n, every input pixel
    /// (y, x) adding its 4 x 4 patch at (2y - 1 + ky, 2x - 1 + kx).
    /// </summary>
    private sealed class TransposedConvolution(int inputs, int outputs, float[] weights, float[] bias)
    {
        private const int Kernel = 4;

        /// <summary>Weights as [ky][kx][in][out], rearranged from PyTorch's [in][out][ky][kx].</summary>
        private readonly float[] _weights = weights;

        public static TransposedConvolution Load(NpzArchive archive, string name, int inputs, int outputs)
        {
            float[] torch = Read(archive, $"{name}.weight", inputs, outputs, Kernel, Kernel);
            float[] bias = Read(archive, $"{name}.bias", outputs);
            var weights = new float[torch.Length];
            for (int i = 0; i < inputs; i++)
            {
                for (int o = 0; o < outputs; o++)
                {
                    for (int ky = 0; ky < Kernel; ky++)
                    {
                        for (int kx = 0; kx < Kernel; kx++)
                        {
                            weights[(((ky * Kernel) + kx) * inputs + i) * outputs + o] = torch[(((i * outputs) + o) * Kernel + ky) * Kernel + kx];
                        }
                    }
                }
            }

            return new TransposedConvolution(inputs, outputs, weights, bias);
        }

        public float[] Apply(float[] input, int size)
        {
            int outSize = size * 2;
            var output = new float[outSize * outSize * outputs];
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    ReadOnlySpan<float> source = input.AsSpan((y * size + x) * inputs, inputs);
                    for (int ky = 0; ky < Kernel; ky++)
                    {
                        int oy = 2 * y - 1 + ky;
                        if ((uint)oy >= (uint)outSize)
                        {
                            continue;
                        }

                        for (int kx = 0; kx < Kernel; kx++)
                        {
                            int ox = 2 * x - 1 + kx;
                            if ((uint)ox >= (uint)outSize)
                            {
                                continue;
                            }

                            Span<float> pixel = output.AsSpan((oy * outSize + ox) * outputs, outputs);
                            ReadOnlySpan<float> taps = _weights.AsSpan(((ky * Kernel) + kx) * inputs * outputs, inputs * outputs);
                            for (int i = 0; i < inputs; i++)
                            {
                                MultiplyAdd(pixel, taps.Slice(i * outputs, outputs), source[i]);
                            }
                        }
                    }
                }
            }

            for (int p = 0; p < outSize * outSize; p++)
            {
                Span<float> pixel = output.AsSpan(p * outputs, outputs);
                for (int o = 0; o < outputs; o++)
                {
                    pixel[o] = Math.Max(pixel[o] + bias[o], 0f);
                }
            }

            return output;
        }
    }
}
