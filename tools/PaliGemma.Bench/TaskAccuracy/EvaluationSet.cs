using System.Text.Json;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Bench.TaskAccuracy;

/// <summary>A shape drawn on an evaluation picture; <see cref="Box"/> in the picture's pixels, X2/Y2 exclusive.</summary>
public sealed record EvaluationObject(string Shape, string Color, PixelBox Box);

public sealed record EvaluationImage(string Name, string Path, int Width, int Height, IReadOnlyList<EvaluationObject> Objects);

/// <summary>
/// One (picture, prompt): its task (caption, count, color, detect), the expected answer, and the
/// float32 PyTorch reference's greedy tokens (ending with EOS when it ended).
/// </summary>
public sealed record EvaluationCase(EvaluationImage Image, string Prompt, string Task, string Expected, string ReferenceText, IReadOnlyList<int> ReferenceTokens, bool ReferenceEnded);

/// <summary>
/// An evaluation folder in the format of tests/fixtures/trained/eval (see its README): eval.json with
/// the pictures, the shapes on them, and per case the expected and the reference's answers.
/// </summary>
public sealed record EvaluationSet(string Folder, string ModelDirectory, int MaxNewTokens, IReadOnlyList<EvaluationImage> Images, IReadOnlyList<EvaluationCase> Cases)
{
    /// <summary>The tasks in the order the tables list them.</summary>
    public static readonly string[] Tasks = ["caption", "count", "color", "detect"];

    public static EvaluationSet Load(string folder)
    {
        string manifest = System.IO.Path.Combine(folder, "eval.json");
        if (!File.Exists(manifest))
        {
            throw new FileNotFoundException($"{folder} is not an evaluation folder: it has no eval.json");
        }

        using var stream = File.OpenRead(manifest);
        using var document = JsonDocument.Parse(stream);
        var root = document.RootElement;
        var images = root.GetProperty("images").EnumerateArray().Select(i => new EvaluationImage(
            i.GetProperty("name").GetString()!,
            System.IO.Path.Combine(folder, i.GetProperty("file").GetString()!),
            i.GetProperty("width").GetInt32(),
            i.GetProperty("height").GetInt32(),
            [.. i.GetProperty("objects").EnumerateArray().Select(o =>
            {
                int[] box = [.. o.GetProperty("box").EnumerateArray().Select(v => v.GetInt32())];
                return new EvaluationObject(o.GetProperty("shape").GetString()!, o.GetProperty("color").GetString()!, new PixelBox(box[0], box[1], box[2], box[3]));
            })])).ToList();
        var byName = images.ToDictionary(i => i.Name);
        var cases = root.GetProperty("cases").EnumerateArray().Select(c => new EvaluationCase(
            byName[c.GetProperty("image").GetString()!],
            c.GetProperty("prompt").GetString()!,
            c.GetProperty("task").GetString()!,
            c.GetProperty("expected").GetString()!,
            c.GetProperty("greedy_text").GetString()!,
            [.. c.GetProperty("greedy_tokens").EnumerateArray().Select(t => t.GetInt32())],
            c.GetProperty("ended_with_eos").GetBoolean())).ToList();
        string model = System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, root.GetProperty("model_dir").GetString()!));
        return new EvaluationSet(folder, model, root.GetProperty("max_new_tokens").GetInt32(), images, cases);
    }
}
