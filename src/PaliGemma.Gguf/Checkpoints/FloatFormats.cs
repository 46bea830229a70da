using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace PaliGemma.Gguf.Checkpoints;

/// <summary>Conversions between F32 and the 16-bit float formats checkpoints and GGUF files use.</summary>
internal static class FloatFormats
{
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        for (int i = 0; i < source.Length; i++)
        {
            bits[i] = (uint)source[i] << 16;
        }
    }

    /// <summary>Round to nearest even, as PyTorch and gguf-py do; NaN stays a quiet NaN.</summary>
    public static void SingleToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(source);
        for (int i = 0; i < bits.Length; i++)
        {
            uint x = bits[i];
            destination[i] = (x & 0x7fffffff) > 0x7f800000
                ? (ushort)((x >> 16) | 0x40)
                : (ushort)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
        }
    }

    public static void SingleToHalf(ReadOnlySpan<float> source, Span<Half> destination) =>
        TensorPrimitives.ConvertToHalf(source, destination);
}
