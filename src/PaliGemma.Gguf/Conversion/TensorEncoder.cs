using System.Runtime.InteropServices;
using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Conversion;

/// <summary>Encodes F32 rows into a GGUF tensor type: float formats in managed code, quantized ones through ggml.</summary>
internal static class TensorEncoder
{
    public static int Encode(GgmlType type, ReadOnlySpan<float> rows, long rowLength, Span<byte> destination)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(rows).CopyTo(destination);
                return rows.Length * 4;
            case GgmlType.F16:
                FloatFormats.SingleToHalf(rows, MemoryMarshal.Cast<byte, Half>(destination)[..rows.Length]);
                return rows.Length * 2;
            case GgmlType.BF16:
                FloatFormats.SingleToBFloat16(rows, MemoryMarshal.Cast<byte, ushort>(destination)[..rows.Length]);
                return rows.Length * 2;
            default:
                return QuantizeInParallel(type, rows, rowLength, destination);
        }
    }

    /// <summary>
    /// K-quants cost far more CPU than reading the checkpoint: split the rows over the cores, as
    /// llama.cpp's quantizer does (ggml_quantize_chunk is row-independent and thread-safe).
    /// </summary>
    private static unsafe int QuantizeInParallel(GgmlType type, ReadOnlySpan<float> rows, long rowLength, Span<byte> destination)
    {
        long rowCount = rows.Length / rowLength;
        long rowBytes = type.RowBytes(rowLength);
        int parts = (int)Math.Clamp(rowCount / 16, 1, Environment.ProcessorCount);
        if (parts == 1)
        {
            return checked((int)GgmlNative.Quantize(type, rows, rowLength, destination));
        }

        fixed (float* source = rows)
        fixed (byte* target = destination)
        {
            float* sourcePointer = source;
            byte* targetPointer = target;
            Parallel.For(0, parts, part =>
            {
                long first = rowCount * part / parts;
                long end = rowCount * (part + 1) / parts;
                var input = new ReadOnlySpan<float>(sourcePointer + (first * rowLength), (int)((end - first) * rowLength));
                var output = new Span<byte>(targetPointer + (first * rowBytes), (int)((end - first) * rowBytes));
                GgmlNative.Quantize(type, input, rowLength, output);
            });
        }

        return checked((int)(rowCount * rowBytes));
    }
}
