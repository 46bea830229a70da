using System.Runtime.InteropServices;
using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>Copies a GGUF with edited metadata or tensor types, to craft hostile inputs from valid files.</summary>
public static class GgufRewriter
{
    /// <param name="metadata">Returns the value to write, or null to drop the key.</param>
    /// <param name="tensorType">The type to store each tensor in (F32 sources only change type).</param>
    public static string Rewrite(string source, string destination, Func<string, GgufValue, GgufValue?>? metadata = null, Func<GgufTensorInfo, GgmlType>? tensorType = null)
    {
        var input = GgufFile.Open(source);
        using var stream = File.Create(destination);
        using var writer = new GgufWriter(stream);
        foreach (var (key, value) in input.MetadataList)
        {
            if ((metadata is null ? value : metadata(key, value)) is { } kept)
            {
                writer.AddMetadata(key, kept);
            }
        }

        var types = input.Tensors.Select(t => tensorType?.Invoke(t) ?? t.Type).ToList();
        for (int i = 0; i < input.Tensors.Count; i++)
        {
            writer.AddTensor(input.Tensors[i].Name, types[i], input.Tensors[i].Dimensions);
        }

        writer.WriteHeader();
        for (int i = 0; i < input.Tensors.Count; i++)
        {
            var tensor = input.Tensors[i];
            var bytes = new byte[tensor.ByteCount];
            input.ReadTensorBytes(tensor, 0, bytes);
            writer.WriteTensorData(Convert(bytes, tensor.Type, types[i]));
        }

        writer.Finish();
        return destination;
    }

    private static byte[] Convert(byte[] bytes, GgmlType from, GgmlType to)
    {
        if (from == to)
        {
            return bytes;
        }

        if (from != GgmlType.F32)
        {
            throw new ArgumentException($"can only convert from F32, not {from}");
        }

        var values = MemoryMarshal.Cast<byte, float>(bytes).ToArray();
        return to switch
        {
            GgmlType.F16 => CheckpointCopier.Encode(values, TensorDType.F16),
            GgmlType.BF16 => CheckpointCopier.Encode(values, TensorDType.BF16),
            _ => throw new ArgumentException($"cannot convert to {to}"),
        };
    }
}
