using System.Security.Cryptography;
using System.Text;
using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Hub;

namespace PaliGemma.Gguf;

/// <summary>The text GGUF and mmproj GGUF a model path stands for.</summary>
public sealed record ModelFiles(string TextModelPath, string MmprojPath, bool WasConverted);

/// <summary>
/// Resolves a model path the way inference.py users pass it: a folder holding one text GGUF and one
/// mmproj GGUF, or a Hugging Face checkpoint folder, converted on first use into a cache and reused.
/// </summary>
public static class ModelLocator
{
    public const string CacheFolderName = "gguf";

    public static ModelFiles Resolve(string path, OutputType textType, OutputType mmprojType, IProgress<ConversionProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Resolve(path, textType, mmprojType, null, progress, cancellationToken);

    /// <summary>
    /// A Hub repository's GGUF files: the snapshot a previous pull completed (no request at all),
    /// else pulled now (<paramref name="alwaysAskHub"/> asks the Hub for the revision's commit even
    /// when a snapshot is cached, and fetches only what that commit adds), then converted on first
    /// use like a checkpoint folder.
    /// </summary>
    public static async Task<ModelFiles> ResolveHubAsync(
        HubRepositoryName repository,
        string revision,
        HubOptions hubOptions,
        OutputType textType,
        OutputType mmprojType,
        bool alwaysAskHub = false,
        IProgress<DownloadProgress>? downloadProgress = null,
        IProgress<ConversionProgress>? conversionProgress = null,
        CancellationToken cancellationToken = default)
    {
        var snapshot = alwaysAskHub ? null : HubPuller.FindCached(repository, revision, hubOptions.CacheDirectory);
        snapshot ??= await HubPuller.PullAsync(repository, revision, hubOptions, downloadProgress, cancellationToken).ConfigureAwait(false);
        if (!snapshot.IsLoraAdapter)
        {
            return Resolve(snapshot.Directory, textType, mmprojType, repository.Name, conversionProgress, cancellationToken);
        }

        // A LoRA adapter repository: its base comes from the Hub too (base_model_name_or_path, main),
        // and the merged GGUFs are kept with the adapter.
        var adapter = LoraAdapter.Load(snapshot.Directory);
        var baseName = HubRepositoryName.TryParse(adapter.BaseModel)
            ?? throw PaliGemmaException.InFile(Path.Combine(snapshot.Directory, LoraAdapter.ConfigFileName), $"base_model_name_or_path '{TensorNames.ForMessage(adapter.BaseModel ?? "")}' is not a Hub repository: convert it with paligemma-convert BASE_DIR --lora ADAPTER_DIR");
        var baseSnapshot = alwaysAskHub ? null : HubPuller.FindCached(baseName, "main", hubOptions.CacheDirectory);
        baseSnapshot ??= await HubPuller.PullAsync(baseName, "main", hubOptions, downloadProgress, cancellationToken).ConfigureAwait(false);
        if (baseSnapshot.IsLoraAdapter)
        {
            throw new PaliGemmaException($"{repository}: its base {baseName} is itself an adapter; stacked adapters are not merged");
        }

        string cache = Path.Combine(snapshot.Directory, CacheFolderName);
        string text = Path.Combine(cache, $"{repository.Name}.{textType.Name}.gguf");
        string mmproj = Path.Combine(cache, $"{repository.Name}.mmproj.{mmprojType.Name}.gguf");
        if (IsFresh(text, snapshot.Directory) && IsFresh(mmproj, snapshot.Directory) && IsFresh(text, baseSnapshot.Directory) && IsFresh(mmproj, baseSnapshot.Directory))
        {
            return new ModelFiles(text, mmproj, false);
        }

        var result = CheckpointConverter.Convert(baseSnapshot.Directory, new ConversionOptions
        {
            OutputDirectory = cache,
            Name = repository.Name,
            TextType = textType,
            MmprojType = mmprojType,
            Overwrite = true,
            LoraAdapterDirectory = snapshot.Directory,
        }, conversionProgress, cancellationToken);
        return new ModelFiles(result.TextModelPath, result.MmprojPath, true);
    }

    private static ModelFiles Resolve(string path, OutputType textType, OutputType mmprojType, string? name, IProgress<ConversionProgress>? progress, CancellationToken cancellationToken)
    {
        if (File.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "is a file: pass a folder as the model path, or the files with --model and --mmproj");
        }

        if (!Directory.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "model folder not found");
        }

        var ggufs = FindGgufPair(path);
        if (ggufs is not null)
        {
            return ggufs;
        }

        if (!File.Exists(Path.Combine(path, "config.json")))
        {
            throw PaliGemmaException.InFile(path, "neither GGUF files nor a Hugging Face checkpoint (config.json) in this folder");
        }

        name ??= Path.GetFileName(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar));
        string cache = CacheFolder(path);
        string text = Path.Combine(cache, $"{name}.{textType.Name}.gguf");
        string mmproj = Path.Combine(cache, $"{name}.mmproj.{mmprojType.Name}.gguf");
        if (IsFresh(text, path) && IsFresh(mmproj, path))
        {
            return new ModelFiles(text, mmproj, false);
        }

        var result = CheckpointConverter.Convert(path, new ConversionOptions { OutputDirectory = cache, Name = name, TextType = textType, MmprojType = mmprojType, Overwrite = true }, progress, cancellationToken);
        return new ModelFiles(result.TextModelPath, result.MmprojPath, true);
    }

    /// <summary>The one text GGUF and one mmproj GGUF of a folder; null when it holds no GGUF at all.</summary>
    private static ModelFiles? FindGgufPair(string folder)
    {
        var files = Directory.GetFiles(folder, "*.gguf").Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0)
        {
            return null;
        }

        var mmprojs = new List<string>();
        var texts = new List<string>();
        foreach (string file in files)
        {
            (GgufFile.Open(file).Architecture == "clip" ? mmprojs : texts).Add(file);
        }

        if (texts.Count != 1 || mmprojs.Count != 1)
        {
            throw PaliGemmaException.InFile(folder, $"expected one text GGUF and one mmproj GGUF, found {texts.Count} text ({string.Join(", ", texts.Select(Path.GetFileName))}) and {mmprojs.Count} mmproj ({string.Join(", ", mmprojs.Select(Path.GetFileName))}); pass --model and --mmproj");
        }

        return new ModelFiles(texts[0], mmprojs[0], false);
    }

    /// <summary>A cached conversion counts only when it is newer than every file of the checkpoint.</summary>
    private static bool IsFresh(string converted, string checkpoint) =>
        File.Exists(converted)
        && Directory.GetFiles(checkpoint).All(f => File.GetLastWriteTimeUtc(f) <= File.GetLastWriteTimeUtc(converted));

    /// <summary>Next to the checkpoint when that folder is writable, else under the user's cache folder.</summary>
    private static string CacheFolder(string checkpoint)
    {
        string local = Path.Combine(checkpoint, CacheFolderName);
        if (IsWritable(checkpoint))
        {
            return local;
        }

        string full = Path.GetFullPath(checkpoint);
        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(full)))[..12].ToLowerInvariant();
        string root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "paligemma-gguf", $"{Path.GetFileName(full)}-{hash}");
    }

    private static bool IsWritable(string folder)
    {
        string probe = Path.Combine(folder, $".write-test-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
