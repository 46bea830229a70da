using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace PaliGemma.Gguf.Checkpoints;

/// <summary>A floating-point tensor of a checkpoint, read row by row as F32.</summary>
public sealed class CheckpointTensor
{
    internal CheckpointTensor(SafetensorsFile file, SafetensorsTensor tensor, LowRankDelta? delta = null)
    {
        File = file;
        Info = tensor;
        Delta = delta;
    }

    public SafetensorsFile File { get; }

    public SafetensorsTensor Info { get; }

    public long[] Shape => Info.Shape;

    /// <summary>A LoRA update merged into every read (null: the weight as stored).</summary>
    public LowRankDelta? Delta { get; }

    /// <summary>Converts rows [<paramref name="firstRow"/>, + destination.Length / RowLength) to F32, with <see cref="Delta"/> added.</summary>
    public void ReadRows(long firstRow, Span<float> destination)
    {
        ReadStoredRows(firstRow, destination);
        Delta?.AddTo(firstRow, destination);
    }

    private void ReadStoredRows(long firstRow, Span<float> destination)
    {
        if (!Info.DType.IsFloatingPoint())
        {
            throw PaliGemmaException.InFile(File.Path, $"tensor '{TensorNames.ForMessage(Info.Name)}' has dtype {Info.DType}; only F32, F16 and BF16 convert");
        }

        int elementSize = Info.DType.ElementSize();
        long byteOffset = firstRow * Info.RowLength * elementSize;
        if (Info.DType == TensorDType.F32)
        {
            File.ReadBytes(Info, byteOffset, MemoryMarshal.AsBytes(destination));
            return;
        }

        byte[] rented = ArrayPool<byte>.Shared.Rent(destination.Length * elementSize);
        try
        {
            var raw = rented.AsSpan(0, destination.Length * elementSize);
            File.ReadBytes(Info, byteOffset, raw);
            if (Info.DType == TensorDType.F16)
            {
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(raw), destination);
            }
            else
            {
                FloatFormats.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(raw), destination);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Reads the whole tensor; only for small tensors (norms, biases, the projector).</summary>
    public float[] ReadAll()
    {
        var values = new float[checked((int)Info.ElementCount)];
        ReadRows(0, values);
        return values;
    }
}
