using System.Text.Json;

namespace PaliGemma.Gguf.Checkpoints;

/// <summary>
/// A Hugging Face PaliGemma checkpoint folder: config.json plus one or more safetensors files
/// (sharded through model.safetensors.index.json), with tensors found by their canonical name
/// whichever naming scheme the checkpoint was saved with.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, (SafetensorsFile File, SafetensorsTensor Tensor)> _byCanonicalName;
    private readonly Dictionary<string, LowRankDelta> _deltas = new(StringComparer.Ordinal);
    private readonly HashSet<string> _deltasRead = new(StringComparer.Ordinal);

    private Checkpoint(string directory, PaliGemmaConfig config, List<SafetensorsFile> files, Dictionary<string, (SafetensorsFile, SafetensorsTensor)> byCanonicalName)
    {
        Directory = directory;
        Config = config;
        _files = files;
        _byCanonicalName = byCanonicalName;
    }

    public string Directory { get; }

    public PaliGemmaConfig Config { get; }

    public IReadOnlyList<string> WeightFiles => _files.Select(f => f.Path).ToList();

    /// <summary>Total bytes of tensor data across the weight files.</summary>
    public long TensorBytes => _byCanonicalName.Values.Sum(t => t.Tensor.ByteCount);

    public IEnumerable<string> CanonicalNames => _byCanonicalName.Keys;

    public static Checkpoint Open(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
        {
            throw PaliGemmaException.InFile(directory, "checkpoint folder not found");
        }

        var config = PaliGemmaConfig.Load(System.IO.Path.Combine(directory, "config.json"));
        var files = new List<SafetensorsFile>();
        try
        {
            var byName = new Dictionary<string, (SafetensorsFile, SafetensorsTensor)>(StringComparer.Ordinal);
            foreach (var (file, expected) in OpenWeightFiles(directory))
            {
                files.Add(file);
                foreach (var name in expected ?? [])
                {
                    if (!file.Tensors.ContainsKey(name))
                    {
                        throw PaliGemmaException.InFile(System.IO.Path.Combine(directory, IndexFileName), $"tensor '{TensorNames.ForMessage(name)}' is mapped to {System.IO.Path.GetFileName(file.Path)} but that file does not hold it");
                    }
                }

                foreach (var tensor in file.Tensors.Values)
                {
                    string canonical = TensorNames.Canonicalize(tensor.Name);
                    if (!byName.TryAdd(canonical, (file, tensor)))
                    {
                        throw PaliGemmaException.InFile(file.Path, $"tensor '{TensorNames.ForMessage(tensor.Name)}' appears more than once in the checkpoint");
                    }
                }
            }

            return new Checkpoint(directory, config, files, byName);
        }
        catch
        {
            files.ForEach(f => f.Dispose());
            throw;
        }
    }

    public bool Contains(string canonicalName) => _byCanonicalName.ContainsKey(canonicalName);

    /// <summary>The tensor with this canonical name; a clear error when the checkpoint lacks it.</summary>
    public CheckpointTensor Get(string canonicalName)
    {
        if (!_byCanonicalName.TryGetValue(canonicalName, out var entry))
        {
            throw PaliGemmaException.InFile(Directory, $"tensor '{canonicalName}' is missing from the checkpoint (needed by the {Config.Text.ModelType} architecture)");
        }

        if (_deltas.TryGetValue(canonicalName, out var delta))
        {
            _deltasRead.Add(canonicalName);
            return new CheckpointTensor(entry.File, entry.Tensor, delta);
        }

        return new CheckpointTensor(entry.File, entry.Tensor);
    }

    /// <summary>
    /// Merges <paramref name="adapter"/> into every read of the weights it adapts. Each adapted
    /// weight must exist with the shape the adapter's factors imply: an adapter trained on another
    /// base is refused here rather than producing a model that quietly computes something else.
    /// </summary>
    public void ApplyAdapter(LoraAdapter adapter)
    {
        foreach (var (canonical, delta) in adapter.Deltas)
        {
            if (!_byCanonicalName.TryGetValue(canonical, out var entry))
            {
                throw PaliGemmaException.InFile(adapter.Directory, $"adapts '{TensorNames.ForMessage(delta.Module)}', which the base checkpoint has no weight for (another architecture?)");
            }

            var shape = entry.Tensor.Shape;
            if (shape.Length != 2 || shape[0] != delta.Outputs || shape[1] != delta.Inputs)
            {
                throw PaliGemmaException.InFile(adapter.Directory, $"'{TensorNames.ForMessage(delta.Module)}': the adapter's update is [{delta.Outputs}, {delta.Inputs}] but the base weight is {entry.Tensor.ShapeText} (an adapter for another base model)");
            }

            _deltas[canonical] = delta;
        }
    }

    /// <summary>Adapted weights nothing has read: after planning a conversion, modules the output does not contain.</summary>
    public IEnumerable<LowRankDelta> UnreadDeltas => _deltas.Where(d => !_deltasRead.Contains(d.Key)).Select(d => d.Value);

    private static IEnumerable<(SafetensorsFile File, List<string>? ExpectedTensors)> OpenWeightFiles(string directory)
    {
        string indexPath = System.IO.Path.Combine(directory, IndexFileName);
        if (File.Exists(indexPath))
        {
            foreach (var (shard, names) in ReadIndex(indexPath))
            {
                string shardPath = System.IO.Path.Combine(directory, shard);
                if (!File.Exists(shardPath))
                {
                    throw PaliGemmaException.InFile(indexPath, $"shard '{TensorNames.ForMessage(shard)}' is named in the index but absent from the folder");
                }

                yield return (SafetensorsFile.Open(shardPath), names);
            }

            yield break;
        }

        string single = System.IO.Path.Combine(directory, "model.safetensors");
        if (File.Exists(single))
        {
            yield return (SafetensorsFile.Open(single), null);
            yield break;
        }

        var candidates = System.IO.Directory.GetFiles(directory, "*.safetensors").Order(StringComparer.Ordinal).ToList();
        if (candidates.Count == 0)
        {
            throw PaliGemmaException.InFile(directory, "no weights: neither model.safetensors nor model.safetensors.index.json nor any *.safetensors file");
        }

        foreach (var candidate in candidates)
        {
            yield return (SafetensorsFile.Open(candidate), null);
        }
    }

    private static List<(string Shard, List<string> Names)> ReadIndex(string indexPath)
    {
        try
        {
            using var stream = File.OpenRead(indexPath);
            using var document = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 16 });
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw PaliGemmaException.InFile(indexPath, "no \"weight_map\" object");
            }

            var shards = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                string? shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                if (string.IsNullOrEmpty(shard) || shard != System.IO.Path.GetFileName(shard))
                {
                    throw PaliGemmaException.InFile(indexPath, $"tensor '{TensorNames.ForMessage(entry.Name)}' maps to an invalid shard name");
                }

                if (!shards.TryGetValue(shard, out var names))
                {
                    shards[shard] = names = [];
                }

                names.Add(entry.Name);
            }

            if (shards.Count == 0)
            {
                throw PaliGemmaException.InFile(indexPath, "\"weight_map\" is empty");
            }

            return shards.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => (s.Key, s.Value)).ToList();
        }
        catch (JsonException e)
        {
            throw PaliGemmaException.InFile(indexPath, $"invalid JSON: {TensorNames.ForMessage(e.Message)}", e);
        }
        catch (InvalidOperationException e)
        {
            // A string that is not UTF-16 (an escaped lone surrogate) parses but cannot be read.
            throw PaliGemmaException.InFile(indexPath, $"unreadable value: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(indexPath, $"cannot read: {e.Message}", e);
        }
    }

    public void Dispose() => _files.ForEach(f => f.Dispose());
}
