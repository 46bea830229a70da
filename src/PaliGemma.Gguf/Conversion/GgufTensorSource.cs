using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Conversion;

/// <summary>A tensor of an existing GGUF file, read as F32 rows (dequantized by ggml when needed).</summary>
internal sealed class GgufTensorSource(GgufFile file, GgufTensorInfo tensor) : TensorSource
{
    public override long[] Dimensions => tensor.Dimensions;

    public override void ReadRows(long firstRow, Span<float> destination)
    {
        long rowBytes = tensor.Type.RowBytes(RowLength);
        long rows = destination.Length / RowLength;
        var bytes = new byte[rows * rowBytes];
        file.ReadTensorBytes(tensor, firstRow * rowBytes, bytes);
        if (tensor.Type == GgmlType.F32)
        {
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
        }
        else
        {
            GgmlNative.ToFloat(tensor.Type, bytes, destination);
        }
    }
}
