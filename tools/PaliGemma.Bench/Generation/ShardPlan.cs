namespace PaliGemma.Bench.Generation;

/// <summary>One safetensors file of the checkpoint and the tensors it holds, in file order.</summary>
internal sealed record Shard(string FileName, IReadOnlyList<TensorSpec> Tensors, long DataBytes);

/// <summary>
/// Splits the tensors into files the way transformers' save_pretrained does: in state_dict order,
/// a new file whenever the next tensor would push the current one past the maximum size. One file
/// is <c>model.safetensors</c>; more are <c>model-0000K-of-0000N.safetensors</c>.
/// </summary>
internal static class ShardPlan
{
    /// <summary>save_pretrained's default max_shard_size, "5GB", which it reads as 5 * 10^9 bytes.</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    public static IReadOnlyList<Shard> Split(IReadOnlyList<TensorSpec> tensors, WeightFormat format, long maxShardBytes)
    {
        var groups = new List<List<TensorSpec>>();
        var sizes = new List<long>();
        foreach (var tensor in tensors)
        {
            long bytes = tensor.ElementCount * format.ElementSize;
            if (groups.Count == 0 || (sizes[^1] > 0 && sizes[^1] + bytes > maxShardBytes))
            {
                groups.Add([]);
                sizes.Add(0);
            }

            groups[^1].Add(tensor);
            sizes[^1] += bytes;
        }

        // The safetensors library lays a file's tensors out sorted by name, whatever order they came in.
        return groups
            .Select((group, i) => new Shard(
                groups.Count == 1 ? "model.safetensors" : $"model-{i + 1:D5}-of-{groups.Count:D5}.safetensors",
                group.OrderBy(t => t.Name, StringComparer.Ordinal).ToList(),
                sizes[i]))
            .ToList();
    }
}
