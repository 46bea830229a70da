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
                return checked((int)GgmlNative.Quantize(type, rows, rowLength, destination));
        }
    }
}
