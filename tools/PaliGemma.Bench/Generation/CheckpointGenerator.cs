using PaliGemma.Bench.Tokenizer;
using PaliGemma.Gguf;

namespace PaliGemma.Bench.Generation;

/// <summary>What <see cref="CheckpointGenerator.Generate"/> writes, and where.</summary>
/// <param name="MaxShardBytes">Largest safetensors file, as save_pretrained's max_shard_size.</param>
/// <param name="Overwrite">Replace the checkpoint files already in the folder.</param>
internal sealed record GenerationOptions(ModelPreset Preset, WeightFormat Format, string OutputDirectory, ulong Seed, long MaxShardBytes, bool Overwrite);

/// <summary>The finished checkpoint.</summary>
internal sealed record GenerationResult(string Directory, IReadOnlyList<string> Files, int ShardCount, long WeightBytes, TimeSpan WeightsElapsed);

/// <summary>
/// Writes a random-weight PaliGemma checkpoint folder in the Hugging Face Hub layout: real shapes,
/// names, configs and tokenizer size, values drawn deterministically from a seed.
/// </summary>
internal static class CheckpointGenerator
{
    /// <summary>Headroom on top of the weights for the tokenizer and JSON files.</summary>
    private const long OtherFilesBytes = 64L << 20;

    public static GenerationResult Generate(GenerationOptions options, CancellationToken cancellationToken)
    {
        string directory = Path.GetFullPath(options.OutputDirectory);
        var shards = ShardPlan.Split(TensorLayout.Build(options.Preset), options.Format, options.MaxShardBytes);
        long weightBytes = shards.Sum(s => s.DataBytes);

        Directory.CreateDirectory(directory);
        PrepareFolder(directory, shards, options.Overwrite);
        CheckFreeSpace(directory, weightBytes + OtherFilesBytes);

        var files = new List<string>();
        var progress = GenerationProgress.ForStandardError(weightBytes);
        var writer = new ShardWriter(options.Seed, options.Format, progress);
        foreach (var shard in shards)
        {
            string path = Path.Combine(directory, shard.FileName);
            writer.Write(shard, path, cancellationToken);
            files.Add(path);
        }

        var weightsElapsed = progress.Elapsed;
        cancellationToken.ThrowIfCancellationRequested();
        var vocabulary = SyntheticVocabulary.Build();
        files.AddRange(TokenizerFiles.Write(directory, vocabulary));
        files.Add(Write(directory, "preprocessor_config.json", path => HubConfigFiles.WritePreprocessorConfig(path, options.Preset.Vision)));
        files.Add(Write(directory, "generation_config.json", path => HubConfigFiles.WriteGenerationConfig(path, options.Preset)));
        if (shards.Count > 1)
        {
            files.Add(Write(directory, HubConfigFiles.IndexFileName, path => HubConfigFiles.WriteIndex(path, shards)));
        }

        // Last: a folder without config.json is no checkpoint, so an interrupted run cannot pass for one.
        cancellationToken.ThrowIfCancellationRequested();
        files.Add(Write(directory, "config.json", path => HubConfigFiles.WriteConfig(path, options.Preset, options.Format, vocabulary.ImageTokenId)));
        return new GenerationResult(directory, files, shards.Count, weightBytes, weightsElapsed);
    }

    private static string Write(string directory, string name, Action<string> write)
    {
        string path = Path.Combine(directory, name);
        write(path);
        return path;
    }

    /// <summary>
    /// Refuses to overwrite a checkpoint unless asked to. When asked, removes the old one's weights
    /// first, including shards of another count that the new index would not name, so they neither
    /// linger nor hold disk space the new files need. Temporaries of a killed run always go.
    /// </summary>
    private static void PrepareFolder(string directory, IReadOnlyList<Shard> shards, bool overwrite)
    {
        var ownNames = new HashSet<string>(StringComparer.Ordinal)
        {
            "config.json", "generation_config.json", "preprocessor_config.json", HubConfigFiles.IndexFileName,
            "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        };
        ownNames.UnionWith(shards.Select(s => s.FileName));
        bool IsOurs(string name) => ownNames.Contains(name) || (name.StartsWith("model", StringComparison.Ordinal) && name.EndsWith(".safetensors", StringComparison.Ordinal));

        foreach (string file in Directory.EnumerateFiles(directory, ".*").ToList())
        {
            if (AtomicFile.TargetOfTemporary(Path.GetFileName(file)) is { } target && IsOurs(target))
            {
                File.Delete(file);
            }
        }

        var existing = Directory.EnumerateFiles(directory).Where(f => IsOurs(Path.GetFileName(f))).Order(StringComparer.Ordinal).ToList();
        if (existing.Count == 0)
        {
            return;
        }

        if (!overwrite)
        {
            throw new PaliGemmaException($"{existing[0]}: already exists (use --force to overwrite)");
        }

        existing.ForEach(File.Delete);
    }

    private static void CheckFreeSpace(string directory, long needed)
    {
        long available;
        try
        {
            available = new DriveInfo(directory).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            // Not knowing is no reason to refuse: the writes will fail clearly if the disk fills.
            return;
        }

        if (available < needed)
        {
            throw new PaliGemmaException($"{directory}: {GenerationProgress.Bytes(needed)} needed but only {GenerationProgress.Bytes(available)} free");
        }
    }
}
