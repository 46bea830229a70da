using System.Text.Json;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// The trained tiny model's evaluation set (see tests/fixtures/trained/README.md): the folder named by
/// PALIGEMMA_TRAINED_EVAL, or the copy kept in the repository. Its eval.json names the checkpoint folder.
/// </summary>
public static class TrainedEval
{
    /// <summary>Below this top-1 margin a step is a near-tie: float rounding may pick the runner-up.</summary>
    public const double NearTieMargin = 0.1;

    private static readonly Lazy<Manifest> Loaded = new(Load);

    public static string Folder => Loaded.Value.Folder;

    /// <summary>Whether the set is the repository's own copy (tests that hold measured figures need it).</summary>
    public static bool IsInRepository => Path.GetFullPath(Folder) == Path.GetFullPath(InRepository);

    private static string InRepository => Path.Combine(GoldenData.RepositoryRoot, "tests", "fixtures", "trained", "eval");

    /// <summary>The Hugging Face checkpoint folder the reference answers come from.</summary>
    public static string ModelDirectory => Loaded.Value.ModelDirectory;

    public static string ModelName => Path.GetFileName(ModelDirectory.TrimEnd(Path.DirectorySeparatorChar));

    /// <summary>Tokens the reference generated at most per case.</summary>
    public static int MaxNewTokens => Loaded.Value.MaxNewTokens;

    public static IReadOnlyList<TrainedCase> Cases => Loaded.Value.Cases;

    public static IReadOnlyList<TrainedImage> Images => Loaded.Value.Images;

    public static TrainedCase Case(string key) => Cases.Single(c => c.Key == key);

    public static TrainedImage Image(string name) => Images.Single(i => i.Name == name);

    /// <summary>
    /// Cases whose whole reference answer, its end included, has no near-tie: any implementation close
    /// to the reference gives exactly these tokens, so tests can compare whole answers.
    /// </summary>
    public static IReadOnlyList<TrainedCase> WholeCases => Cases.Where(c => c.IsWhole).ToList();

    /// <summary>
    /// <paramref name="count"/> whole cases that differ pairwise in <paramref name="key"/> (default: the
    /// answer), in the set's order, each on a picture of its own where the set allows: a test comparing
    /// answers between requests sees any mix-up, and one comparing them with the reference sees a model
    /// that always prints the same thing.
    /// </summary>
    public static IReadOnlyList<TrainedCase> DifferentAnswers(int count, Func<TrainedCase, object>? key = null, Func<TrainedCase, bool>? where = null)
    {
        key ??= c => c.GreedyText;
        var candidates = WholeCases.Where(where ?? (_ => true)).ToList();
        var picked = new List<TrainedCase>();
        foreach (bool ownPicture in new[] { true, false })
        {
            foreach (var c in candidates)
            {
                if (picked.Count < count && !picked.Contains(c) && picked.All(p => !Equals(key(p), key(c)))
                    && (!ownPicture || picked.All(p => p.Image != c.Image)))
                {
                    picked.Add(c);
                }
            }
        }

        return picked.Count == count ? picked : throw new InvalidOperationException($"{Folder} has fewer than {count} whole cases that differ");
    }

    /// <summary>The whole case with the longest answer (for tests that stop or sample mid-answer).</summary>
    public static TrainedCase LongestWholeAnswer => WholeCases.MaxBy(c => c.AnswerTokens.Length)!;

    /// <summary>A result's tokens as the reference lists them: with EOS (1) appended when generation ended there.</summary>
    public static int[] TokensWithEnd(GenerationResult result) =>
        result.StopReason == StopReason.EndOfSequence ? [.. result.Tokens, TrainedCase.EndOfSequence] : [.. result.Tokens];

    private static Manifest Load()
    {
        string folder = Environment.GetEnvironmentVariable("PALIGEMMA_TRAINED_EVAL") is { Length: > 0 } env
            ? env
            : InRepository;
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "eval.json")));
        var root = document.RootElement;

        var images = root.GetProperty("images").EnumerateArray().Select(i => new TrainedImage(
            i.GetProperty("name").GetString()!,
            Path.Combine(folder, i.GetProperty("file").GetString()!),
            i.GetProperty("width").GetInt32(),
            i.GetProperty("height").GetInt32(),
            i.GetProperty("objects").EnumerateArray().Select(o => new TrainedObject(
                o.GetProperty("shape").GetString()!,
                o.GetProperty("color").GetString()!,
                Ints(o.GetProperty("box")),
                Ints(o.GetProperty("loc")))).ToList())).ToList();
        var byName = images.ToDictionary(i => i.Name);
        var cases = root.GetProperty("cases").EnumerateArray().Select(c => new TrainedCase(
            byName[c.GetProperty("image").GetString()!],
            c.GetProperty("prompt").GetString()!,
            c.GetProperty("task").GetString()!,
            Ints(c.GetProperty("input_ids")),
            c.GetProperty("expected").GetString()!,
            c.GetProperty("greedy_text").GetString()!,
            Ints(c.GetProperty("greedy_tokens")),
            c.GetProperty("ended_with_eos").GetBoolean(),
            c.GetProperty("top1_margins").EnumerateArray().Select(m => m.GetDouble()).ToArray())).ToList();
        string modelDirectory = Path.GetFullPath(Path.Combine(folder, root.GetProperty("model_dir").GetString()!));
        return new Manifest(folder, modelDirectory, root.GetProperty("max_new_tokens").GetInt32(), cases, images);
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private sealed record Manifest(string Folder, string ModelDirectory, int MaxNewTokens, List<TrainedCase> Cases, List<TrainedImage> Images);
}

/// <summary>A picture of the evaluation set and the shapes drawn on it (boxes in pixels, x1/y1 exclusive).</summary>
public sealed record TrainedImage(string Name, string Path, int Width, int Height, IReadOnlyList<TrainedObject> Objects);

/// <param name="Box">[x0, y0, x1, y1] in pixels, x1/y1 exclusive.</param>
/// <param name="Loc">[y1, x1, y2, x2]: the 0..1023 bins of the expected answer.</param>
public sealed record TrainedObject(string Shape, string Color, int[] Box, int[] Loc);

/// <summary>
/// One (picture, prompt) of the evaluation set: the ground truth, and the float32 PyTorch reference's
/// greedy tokens (ending with EOS = 1 when it was reached) with each step's top-1 margin.
/// </summary>
public sealed record TrainedCase(TrainedImage Image, string Prompt, string Task, int[] InputIds, string Expected, string GreedyText, int[] GreedyTokens, bool EndedWithEos, double[] Top1Margins)
{
    public const int EndOfSequence = 1;

    public string Key => $"{Image.Name}: {Prompt}";

    /// <summary>The reference's greedy answer is the expected one (and ended).</summary>
    public bool ReferenceIsCorrect => EndedWithEos && GreedyText == Expected;

    /// <summary>
    /// Steps before the first near-tie (top-1 margin below <see cref="TrainedEval.NearTieMargin"/>):
    /// up to there any implementation close to the reference must pick the same tokens.
    /// </summary>
    public int RobustPrefixLength
    {
        get
        {
            int index = Array.FindIndex(Top1Margins, m => m < TrainedEval.NearTieMargin);
            return index < 0 ? Top1Margins.Length : index;
        }
    }

    /// <summary>No near-tie anywhere in the reference's answer: it must be reproduced whole.</summary>
    public bool IsWhole => RobustPrefixLength == Top1Margins.Length;

    public GenerationRequest Request => new(Image.Path, Prompt);

    /// <summary>The reference's tokens without the final EOS.</summary>
    public int[] AnswerTokens => EndedWithEos ? GreedyTokens[..^1] : GreedyTokens;

    public override string ToString() => Key;
}
