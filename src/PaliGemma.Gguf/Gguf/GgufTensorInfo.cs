namespace PaliGemma.Gguf.Gguf;

/// <summary>
/// A tensor's entry in a GGUF file. <see cref="Dimensions"/> are in ggml order: the innermost
/// (contiguous) dimension first, the reverse of PyTorch's shape.
/// </summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Dimensions, long Offset)
{
    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => checked(a * b));

    public long RowLength => Dimensions.Length == 0 ? 1 : Dimensions[0];

    public long RowCount => ElementCount / Math.Max(1, RowLength);

    public long ByteCount => checked(Type.RowBytes(RowLength) * RowCount);

    public string DimensionsText => "[" + string.Join(", ", Dimensions) + "]";
}
