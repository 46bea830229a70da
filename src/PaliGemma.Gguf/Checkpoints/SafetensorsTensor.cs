namespace PaliGemma.Gguf.Checkpoints;

/// <summary>One tensor as a safetensors header declares it, already checked against the file.</summary>
/// <param name="Name">The name in the file.</param>
/// <param name="DType">The element type.</param>
/// <param name="Shape">The shape, outermost dimension first (PyTorch order).</param>
/// <param name="DataOffset">Offset of the first byte in the file's data section.</param>
/// <param name="ByteCount">Number of bytes, equal to the element count times the element size.</param>
public sealed record SafetensorsTensor(string Name, TensorDType DType, long[] Shape, long DataOffset, long ByteCount)
{
    public long ElementCount => ByteCount / DType.ElementSize();

    /// <summary>Elements in one row: the innermost dimension (1 for a scalar).</summary>
    public long RowLength => Shape.Length == 0 ? 1 : Shape[^1];

    public long RowCount => RowLength == 0 ? 0 : ElementCount / RowLength;

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
