using System.Runtime.InteropServices;
using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// Derives test checkpoints from a golden one: renamed tensors, another dtype, another shard count,
/// with config and tokenizer files copied alongside.
/// </summary>
public static class CheckpointCopier
{
    public static string Copy(string source, string destination, int shards = 1, Func<string, string>? rename = null, TensorDType? dtype = null)
    {
        Directory.CreateDirectory(destination);
        foreach (string file in Directory.GetFiles(source).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal) && !f.EndsWith(".index.json", StringComparison.Ordinal)))
        {
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)), overwrite: true);
        }

        var tensors = ReadAll(source);
        var groups = tensors.Select((t, i) => (t, i)).GroupBy(p => p.i * shards / tensors.Count, p => p.t).ToList();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int s = 0; s < groups.Count; s++)
        {
            string name = shards == 1 ? "model.safetensors" : $"model-{s + 1:D5}-of-{groups.Count:D5}.safetensors";
            using var stream = File.Create(Path.Combine(destination, name));
            using var writer = new SafetensorsWriter(stream);
            var converted = groups[s].Select(t => (Name: rename?.Invoke(t.Name) ?? t.Name, t.Shape, Values: t.Values)).ToList();
            foreach (var t in converted)
            {
                writer.AddTensor(t.Name, dtype ?? TensorDType.F32, t.Shape);
                weightMap[t.Name] = name;
            }

            writer.WriteHeader();
            foreach (var t in converted)
            {
                writer.WriteData(Encode(t.Values, dtype ?? TensorDType.F32));
            }
        }

        if (shards > 1)
        {
            File.WriteAllText(Path.Combine(destination, Checkpoint.IndexFileName), JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["metadata"] = new Dictionary<string, long> { ["total_size"] = 0 },
                ["weight_map"] = weightMap,
            }));
        }

        return destination;
    }

    /// <summary>Every tensor of a checkpoint as F32, in file order.</summary>
    public static List<(string Name, long[] Shape, float[] Values)> ReadAll(string directory)
    {
        using var checkpoint = Checkpoint.Open(directory);
        var result = new List<(string, long[], float[])>();
        foreach (string file in checkpoint.WeightFiles)
        {
            using var safetensors = SafetensorsFile.Open(file);
            foreach (var tensor in safetensors.Tensors.Values.OrderBy(t => t.DataOffset))
            {
                result.Add((tensor.Name, tensor.Shape, new CheckpointTensor(safetensors, tensor).ReadAll()));
            }
        }

        return result;
    }

    public static byte[] Encode(float[] values, TensorDType dtype)
    {
        switch (dtype)
        {
            case TensorDType.F32:
                return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            case TensorDType.F16:
                return MemoryMarshal.AsBytes(values.Select(v => (Half)v).ToArray().AsSpan()).ToArray();
            case TensorDType.BF16:
                var bits = new ushort[values.Length];
                FloatFormats.SingleToBFloat16(values, bits);
                return MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
            default:
                throw new ArgumentException($"cannot encode {dtype}");
        }
    }
}
