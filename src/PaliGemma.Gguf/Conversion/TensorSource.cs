using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// Where a GGUF tensor's values come from, read as F32 rows in chunks so that no tensor has to be
/// in memory at once. <see cref="Dimensions"/> are in ggml order (innermost first).
/// </summary>
internal abstract class TensorSource
{
    public abstract long[] Dimensions { get; }

    public long RowLength => Dimensions[0];

    public long RowCount => Dimensions.Skip(1).Aggregate(1L, (a, b) => a * b);

    /// <summary>Fills <paramref name="destination"/> (whole rows) starting at row <paramref name="firstRow"/>.</summary>
    public abstract void ReadRows(long firstRow, Span<float> destination);

    /// <summary>A checkpoint tensor, optionally transformed element-wise (Gemma's norm + 1, query scaling).</summary>
    public static TensorSource From(CheckpointTensor tensor, Func<float, float>? transform = null) => new CheckpointSource(tensor, transform);

    public static TensorSource From(float[] values, params long[] dimensions) => new ArraySource(values, dimensions);

    /// <summary>Appends zero rows up to <paramref name="rows"/> (PaliGemma pads its embedding rows).</summary>
    public TensorSource PadRowsTo(long rows) => rows == RowCount ? this : new PaddedSource(this, rows);

    private sealed class CheckpointSource(CheckpointTensor tensor, Func<float, float>? transform) : TensorSource
    {
        public override long[] Dimensions { get; } = tensor.Shape.Length == 0 ? [1] : tensor.Shape.Reverse().ToArray();

        public override void ReadRows(long firstRow, Span<float> destination)
        {
            tensor.ReadRows(firstRow, destination);
            if (transform is not null)
            {
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = transform(destination[i]);
                }
            }
        }
    }

    private sealed class ArraySource(float[] values, long[] dimensions) : TensorSource
    {
        public override long[] Dimensions => dimensions;

        public override void ReadRows(long firstRow, Span<float> destination) =>
            values.AsSpan(checked((int)(firstRow * RowLength)), destination.Length).CopyTo(destination);
    }

    private sealed class PaddedSource(TensorSource inner, long rows) : TensorSource
    {
        public override long[] Dimensions { get; } = [inner.RowLength, rows];

        public override void ReadRows(long firstRow, Span<float> destination)
        {
            long innerRows = Math.Clamp(inner.RowCount - firstRow, 0, destination.Length / RowLength);
            int split = (int)(innerRows * RowLength);
            if (split > 0)
            {
                inner.ReadRows(firstRow, destination[..split]);
            }

            destination[split..].Clear();
        }
    }
}

/// <summary>One tensor to write: its GGUF name, where its values come from and the type to store.</summary>
internal sealed record TensorPlan(string Name, TensorSource Source, Gguf.GgmlType Type);
