using System.Runtime.InteropServices;
using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// The golden reference data (see tests/fixtures/golden/README.md): the folder named by
/// PALIGEMMA_GOLDEN, or the copy kept in the repository.
/// </summary>
public static class GoldenData
{
    private static readonly Lazy<Manifest> Loaded = new(Load);

    public static string Folder => Loaded.Value.Folder;

    /// <summary>Whether the data is the repository's own copy (tests that hold measured figures need it).</summary>
    public static bool IsInRepository => Path.GetFullPath(Folder) == Path.GetFullPath(Path.Combine(RepositoryRoot, "tests", "fixtures", "golden"));

    public static IReadOnlyList<GoldenModel> Models => Loaded.Value.Models;

    public static IReadOnlyList<(string Text, int[] Ids)> TokenizerCases => Loaded.Value.TokenizerCases;

    public static IReadOnlyList<(string Image, string File, int[] Resolutions)> PreprocessCases => Loaded.Value.PreprocessCases;

    public static IEnumerable<GoldenCase> Cases => Models.SelectMany(m => m.Cases);

    public static GoldenModel Model(string name) => Models.Single(m => m.Name == name);

    public static GoldenCase Case(string key) => Cases.Single(c => c.Key == key);

    public static string ImagePath(string image) =>
        Path.Combine(Folder, PreprocessCases.Single(p => p.Image == image).File);

    /// <summary>A float32 tensor of golden.safetensors, flattened.</summary>
    public static float[] Tensor(string name)
    {
        using var file = SafetensorsFile.Open(Path.Combine(Folder, "golden.safetensors"));
        if (!file.Tensors.TryGetValue(name, out var tensor))
        {
            throw new KeyNotFoundException($"golden.safetensors has no tensor '{name}'");
        }

        var values = new float[tensor.ElementCount];
        file.ReadBytes(tensor, 0, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>The repository root (the folder holding PaliGemma.Gguf.sln).</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "PaliGemma.Gguf.sln")))
                {
                    return dir.FullName;
                }
            }

            throw new DirectoryNotFoundException("cannot find the repository root above " + AppContext.BaseDirectory);
        }
    }

    private static Manifest Load()
    {
        string folder = Environment.GetEnvironmentVariable("PALIGEMMA_GOLDEN") is { Length: > 0 } env
            ? env
            : Path.Combine(RepositoryRoot, "tests", "fixtures", "golden");
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "golden.json")));
        var root = document.RootElement;

        var models = new List<GoldenModel>();
        foreach (var model in root.GetProperty("models").EnumerateObject())
        {
            var m = model.Value;
            var cases = m.GetProperty("cases").EnumerateArray().Select(c => new GoldenCase(
                model.Name,
                c.GetProperty("key").GetString()!,
                c.GetProperty("image").GetString()!,
                c.GetProperty("prompt").GetString()!,
                Ints(c.GetProperty("input_ids")),
                Ints(c.GetProperty("greedy_tokens")),
                c.GetProperty("greedy_text").GetString()!,
                c.GetProperty("min_top1_margin").GetDouble())).ToList();
            models.Add(new GoldenModel(
                model.Name,
                Path.Combine(folder, m.GetProperty("dir").GetString()!),
                m.GetProperty("image_size").GetInt32(),
                m.GetProperty("image_tokens").GetInt32(),
                m.GetProperty("image_token_id").GetInt32(),
                m.GetProperty("vocab_size").GetInt32(),
                m.GetProperty("text_model_type").GetString()!,
                cases));
        }

        var tokenizerCases = root.GetProperty("tokenizer_cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, Ints(c.GetProperty("ids")))).ToList();
        var preprocessCases = root.GetProperty("preprocess_cases").EnumerateArray()
            .Select(c => (c.GetProperty("image").GetString()!, c.GetProperty("file").GetString()!, Ints(c.GetProperty("resolutions")))).ToList();
        return new Manifest(folder, models, tokenizerCases, preprocessCases);
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private sealed record Manifest(string Folder, List<GoldenModel> Models, List<(string, int[])> TokenizerCases, List<(string, string, int[])> PreprocessCases);
}

public sealed record GoldenModel(string Name, string Directory, int ImageSize, int ImageTokens, int ImageTokenId, int VocabSize, string TextModelType, IReadOnlyList<GoldenCase> Cases)
{
    public bool IsGemma2 => TextModelType == "gemma2";

    public override string ToString() => Name;
}

public sealed record GoldenCase(string Model, string Key, string Image, string Prompt, int[] InputIds, int[] GreedyTokens, string GreedyText, double MinTop1Margin)
{
    public override string ToString() => Key;
}
