
namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Pillow's bicubic resampler for 8-bit RGB, reproduced bit for bit: the reference image processor
/// stretches pictures with it, so any other bicubic would feed the model different pixels.
/// </summary>
internal static class PillowBicubic
{
    // Pillow: 8 bits for the result, 2 for overflow of filters with negative lobes, the rest for the fraction.
    private const int PillowPrecisionBits = 32 - 8 - 2;
    // Pillow's BICUBIC support: the kernel is non-zero on (-2, 2).
    private const double BicubicSupport = 2.0;

    /// <summary>
    /// Pillow's <c>ImagingResample</c> with the BICUBIC filter for an 8-bit RGB image, box (0, 0, width, height):
    /// a horizontal pass into an 8-bit intermediate (only if the width changes), then a vertical pass (only if the
    /// height changes); with neither the pixels are copied unchanged. <paramref name="variant"/> picks the fixed-point
    /// weights: Pillow's, or torchvision's port of the same algorithm.
    /// </summary>
    /// <param name="rgb">width * height * 3 bytes, row-major, interleaved.</param>
    internal static byte[] Resize(ReadOnlySpan<byte> rgb, int width, int height, int outWidth, int outHeight, BicubicVariant variant = BicubicVariant.Pillow) =>
        Resize(rgb, width, height, outWidth, outHeight, RgbChannels, variant);

    /// <summary>
    /// The same resampler for an 8-bit single-channel ("L") image, as Pillow runs it on one: big_vision's demo
    /// resizes the 8-bit segmentation mask into the object's box this way.
    /// </summary>
    /// <param name="grey">width * height bytes, row-major.</param>
    internal static byte[] ResizeGrey(ReadOnlySpan<byte> grey, int width, int height, int outWidth, int outHeight) =>
        Resize(grey, width, height, outWidth, outHeight, 1, BicubicVariant.Pillow);

    private const int RgbChannels = 3;

    private static byte[] Resize(ReadOnlySpan<byte> pixels, int width, int height, int outWidth, int outHeight, int channels, BicubicVariant variant)
    {
        if (pixels.Length != (long)width * height * channels)
        {
            throw new ArgumentException($"Expected {width} x {height} x {channels} bytes, got {pixels.Length}.", nameof(pixels));
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outHeight);
        bool needHorizontal = outWidth != width;
        bool needVertical = outHeight != height;
        if (!needHorizontal && !needVertical)
        {
            return pixels.ToArray();
        }

        var vertical = Coefficients.Compute(height, outHeight, variant);

        // Pillow resamples horizontally only the source rows the vertical pass will read.
        int firstRow = vertical.Bounds[0];
        int lastRow = vertical.Bounds[2 * (outHeight - 1)] + vertical.Bounds[2 * (outHeight - 1) + 1];
        ReadOnlySpan<byte> source = pixels;
        int sourceRowOffset = 0;
        if (needHorizontal)
        {
            var horizontal = Coefficients.Compute(width, outWidth, variant);
            var intermediate = new byte[(long)outWidth * (lastRow - firstRow) * channels];
            if (channels == RgbChannels)
            {
                ResampleHorizontal(pixels, width, firstRow, lastRow - firstRow, horizontal, intermediate);
            }
            else
            {
                ResampleHorizontalGrey(pixels, width, firstRow, lastRow - firstRow, horizontal, intermediate);
            }

            if (!needVertical)
            {
                return intermediate;
            }

            source = intermediate;
            sourceRowOffset = firstRow;
        }

        var output = new byte[(long)outWidth * outHeight * channels];
        ResampleVertical(source, outWidth * channels, sourceRowOffset, vertical, output);
        return output;
    }

    private static void ResampleHorizontalGrey(ReadOnlySpan<byte> source, int width, int firstRow, int rows, Coefficients coefficients, Span<byte> destination)
    {
        int outWidth = coefficients.Bounds.Length / 2;
        int half = 1 << (coefficients.Precision - 1);
        for (int y = 0; y < rows; y++)
        {
            ReadOnlySpan<byte> sourceRow = source.Slice((firstRow + y) * width, width);
            Span<byte> destinationRow = destination.Slice(y * outWidth, outWidth);
            for (int xx = 0; xx < outWidth; xx++)
            {
                int min = coefficients.Bounds[2 * xx];
                int count = coefficients.Bounds[2 * xx + 1];
                ReadOnlySpan<int> k = coefficients.Weights.AsSpan(xx * coefficients.KernelSize, count);
                ReadOnlySpan<byte> r = sourceRow.Slice(min, count);
                int sum = half;
                for (int i = 0; i < k.Length; i++)
                {
                    sum += r[i] * k[i];
                }

                destinationRow[xx] = Clip8(sum, coefficients.Precision);
            }
        }
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

    private static void ResampleVertical(ReadOnlySpan<byte> source, int stride, int sourceRowOffset, Coefficients coefficients, Span<byte> destination)
    {
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
