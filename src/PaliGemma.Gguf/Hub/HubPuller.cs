using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Hub;

/// <summary>A repository's files at one commit, verified, in the cache.</summary>
public sealed record HubSnapshot(HubRepositoryName Repository, string Commit, string Directory)
{
    /// <summary>A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) rather than a checkpoint.</summary>
    public bool IsLoraAdapter => File.Exists(System.IO.Path.Combine(Directory, LoraAdapter.ConfigFileName)) && !File.Exists(System.IO.Path.Combine(Directory, "config.json"));
}

/// <summary>
/// Fetches what conversion needs from a Hub repository into the cache (<see cref="HubCache"/>):
/// config, tokenizer and preprocessor files, the safetensors index and the shards it names.
/// </summary>
public static class HubPuller
{
    /// <summary>Small files conversion reads (those present are fetched), before the weights.</summary>
    private static readonly string[] SmallFiles =
    [
        "config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "preprocessor_config.json", "processor_config.json", "generation_config.json", Checkpoint.IndexFileName,
    ];

    /// <summary>The snapshot a previous pull of this revision completed, without asking the Hub; null when there is none.</summary>
    public static HubSnapshot? FindCached(HubRepositoryName repository, string revision, string cacheDirectory)
    {
        string refFile = HubCache.RefFile(cacheDirectory, repository, revision);
        string? commit = HubClient.IsCommitHash(revision) ? revision.ToLowerInvariant() : File.Exists(refFile) ? File.ReadAllText(refFile).Trim() : null;
        if (commit is null || !HubClient.IsCommitHash(commit) || !File.Exists(HubCache.RefFile(cacheDirectory, repository, commit)))
        {
            return null;
        }

        string snapshot = HubCache.SnapshotFolder(cacheDirectory, repository, commit);
        return Directory.Exists(snapshot) ? new HubSnapshot(repository, commit, snapshot) : null;
    }

    /// <summary>
    /// Asks the Hub which commit <paramref name="revision"/> is, downloads the files of that commit
    /// not yet in the cache (resuming partial downloads, verifying each against the Hub's checksum),
    /// and returns the snapshot folder.
    /// </summary>
    public static async Task<HubSnapshot> PullAsync(HubRepositoryName repository, string revision, HubOptions options, IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var client = new HubClient(options);
        var info = await client.GetModelInfoAsync(repository, revision, cancellationToken).ConfigureAwait(false);
        var byPath = info.Files.ToDictionary(f => f.Path, StringComparer.Ordinal);
        bool isAdapter = !byPath.ContainsKey("config.json") && byPath.ContainsKey(LoraAdapter.ConfigFileName);
        if (!byPath.ContainsKey("config.json") && !isAdapter)
        {
            throw new PaliGemmaException($"{repository}: no config.json at {info.Commit[..12]}: not a Hugging Face transformers checkpoint (nor a PEFT adapter)");
        }

        string snapshot = HubCache.SnapshotFolder(options.CacheDirectory, repository, info.Commit);
        string downloads = HubCache.DownloadsFolder(options.CacheDirectory, repository);
        Directory.CreateDirectory(snapshot);
        Directory.CreateDirectory(downloads);

        var small = (isAdapter ? [LoraAdapter.ConfigFileName] : SmallFiles).Where(byPath.ContainsKey).Select(n => byPath[n]).ToList();
        int fileCount = small.Count;
        int index = 0;
        foreach (var file in small)
        {
            await FetchAsync(client, info, file, snapshot, downloads, index++, fileCount, progress, cancellationToken).ConfigureAwait(false);
            if (file.Path == "config.json")
            {
                // Refuse another architecture before gigabytes of its weights arrive.
                PaliGemmaConfig.Load(Path.Combine(snapshot, "config.json"));
            }
        }

        var weights = isAdapter
            ? [byPath.TryGetValue(LoraAdapter.WeightsFileName, out var adapterWeights) ? adapterWeights : throw new PaliGemmaException($"{repository}: a PEFT adapter without {LoraAdapter.WeightsFileName} (only safetensors adapters merge)")]
            : WeightFiles(repository, byPath, snapshot);
        fileCount += weights.Count;
        foreach (var file in weights)
        {
            await FetchAsync(client, info, file, snapshot, downloads, index++, fileCount, progress, cancellationToken).ConfigureAwait(false);
        }

        // The commit's marker, then the revision's ref: written last, so a cached ref always
        // stands for a complete snapshot.
        WriteAtomically(HubCache.RefFile(options.CacheDirectory, repository, info.Commit), info.Commit);
        if (!string.Equals(revision, info.Commit, StringComparison.OrdinalIgnoreCase))
        {
            WriteAtomically(HubCache.RefFile(options.CacheDirectory, repository, revision), info.Commit);
        }

        return new HubSnapshot(repository, info.Commit, snapshot);
    }

    /// <summary>The shards the index names; else model.safetensors; else every top-level *.safetensors (as <see cref="Checkpoint"/> reads them).</summary>
    private static List<HubFile> WeightFiles(HubRepositoryName repository, Dictionary<string, HubFile> byPath, string snapshot)
    {
        string index = Path.Combine(snapshot, Checkpoint.IndexFileName);
        if (File.Exists(index))
        {
            var shards = new SortedSet<string>(StringComparer.Ordinal);
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllText(index));
                if (document.RootElement.TryGetProperty("weight_map", out var map) && map.ValueKind == JsonValueKind.Object)
                {
                    foreach (var entry in map.EnumerateObject())
                    {
                        if (entry.Value.GetString() is { } shard)
                        {
                            shards.Add(shard);
                        }
                    }
                }
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException)
            {
                throw PaliGemmaException.InFile(index, $"invalid JSON: {TensorNames.ForMessage(e.Message)}", e);
            }

            return shards.Select(shard => byPath.TryGetValue(shard, out var file) && shard == Path.GetFileName(shard)
                ? file
                : throw new PaliGemmaException($"{repository}: the safetensors index names '{TensorNames.ForMessage(shard)}', which the repository does not have")).ToList();
        }

        if (byPath.TryGetValue("model.safetensors", out var single))
        {
            return [single];
        }

        var all = byPath.Values.Where(f => !f.Path.Contains('/') && f.Path.EndsWith(".safetensors", StringComparison.Ordinal)).OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
        return all.Count > 0
            ? all
            : throw new PaliGemmaException($"{repository}: no safetensors weights in the repository (only safetensors convert)");
    }

    private static async Task FetchAsync(HubClient client, HubModelInfo info, HubFile file, string snapshot, string downloads, int index, int count, IProgress<DownloadProgress>? progress, CancellationToken cancellationToken)
    {
        string destination = Path.Combine(snapshot, file.Path);
        if (File.Exists(destination) && (file.Size is null || new FileInfo(destination).Length == file.Size))
        {
            // Only verified files get their final name: a file there is the commit's.
            return;
        }

        string key = file.Sha256 ?? file.GitBlobId ?? $"{info.Commit}-{Uri.EscapeDataString(file.Path)}";
        string part = Path.Combine(downloads, key + ".part");
        var started = System.Diagnostics.Stopwatch.StartNew();
        await client.DownloadAsync(info.Repository, info.Commit, file, part, (done, total, resumed) =>
            progress?.Report(new DownloadProgress(file.Path, index, count, done, total, resumed, started.Elapsed)), cancellationToken).ConfigureAwait(false);
        File.Move(part, destination, overwrite: true);
    }

    private static void WriteAtomically(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temporary = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }
}
