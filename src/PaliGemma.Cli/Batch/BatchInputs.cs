using System.Text.Json;
using Microsoft.Extensions.FileSystemGlobbing;
using PaliGemma.Gguf;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Cli.Batch;

/// <summary>
/// Expands <c>paligemma batch</c>'s inputs into an ordered list of pictures with their prompts:
/// a folder (its pictures, recursively), a glob (<c>photos/**/*.jpg</c>), a JSONL manifest
/// (<c>{"image": ..., "prompt": ...}</c> or <c>"prompts": [...]</c> per line, paths relative to the
/// manifest), or a picture. The order is deterministic (inputs in the order given, files sorted by
/// ordinal path), which is what makes <c>--shard</c> and <c>--resume</c> reproducible.
/// </summary>
internal static class BatchInputs
{
    private static readonly HashSet<string> PictureExtensions = new(StringComparer.OrdinalIgnoreCase)
    {
        ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tga", ".webp", ".tif", ".tiff", ".pbm", ".ppm", ".pgm",
    };

    public static List<BatchItem> Expand(IEnumerable<string> inputs, IReadOnlyList<string> prompts)
    {
        var items = new List<BatchItem>();
        foreach (string input in inputs)
        {
            if (Directory.Exists(input))
            {
                items.AddRange(Pictures(Directory.EnumerateFiles(input, "*", SearchOption.AllDirectories), input, prompts));
            }
            else if (IsGlob(input))
            {
                items.AddRange(Pictures(Glob(input), input, prompts));
            }
            else if (input.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
            {
                items.AddRange(Manifest(input, prompts));
            }
            else if (File.Exists(input))
            {
                items.Add(new BatchItem(input, RequirePrompts(prompts, input)));
            }
            else
            {
                throw new PaliGemmaException($"{input}: no such file, folder or matching glob");
            }
        }

        if (items.Count == 0)
        {
            throw new PaliGemmaException("the inputs hold no pictures");
        }

        return items;
    }

    /// <summary>Share <paramref name="index"/> of <paramref name="count"/>: every count-th picture, starting at index.</summary>
    public static List<BatchItem> Shard(List<BatchItem> items, int index, int count) =>
        items.Where((_, i) => i % count == index).ToList();

    /// <summary>Parses <c>I/N</c> with 0 &lt;= I &lt; N.</summary>
    public static (int Index, int Count) ParseShard(string value)
    {
        var parts = value.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int index) || !int.TryParse(parts[1], out int count) || count < 1 || index < 0 || index >= count)
        {
            throw new PaliGemmaException($"--shard {value}: expected I/N with 0 <= I < N, e.g. 0/4 (a Kubernetes Indexed Job's JOB_COMPLETION_INDEX)");
        }

        return (index, count);
    }

    private static bool IsGlob(string input) => input.AsSpan().IndexOfAny("*?[") >= 0;

    private static IEnumerable<string> Glob(string pattern)
    {
        // The fixed leading folders are the root; the rest is matched under it.
        string full = pattern.Replace('\\', '/');
        int wildcard = full.AsSpan().IndexOfAny("*?[");
        int slash = full.LastIndexOf('/', wildcard);
        string root = slash < 0 ? "." : full[..slash];
        string relative = slash < 0 ? full : full[(slash + 1)..];
        if (!Directory.Exists(root))
        {
            return [];
        }

        var matcher = new Matcher(StringComparison.Ordinal);
        matcher.AddInclude(relative);
        return matcher.GetResultsInFullPath(root).Select(p => slash < 0 ? Path.GetRelativePath(".", p) : Path.Combine(root, Path.GetRelativePath(root, p)));
    }

    private static IEnumerable<BatchItem> Pictures(IEnumerable<string> files, string input, IReadOnlyList<string> prompts)
    {
        var pictures = files.Where(f => PictureExtensions.Contains(Path.GetExtension(f))).Order(StringComparer.Ordinal).ToList();
        var required = RequirePrompts(prompts, input);
        return pictures.Select(p => new BatchItem(p, required));
    }

    private static IReadOnlyList<string> RequirePrompts(IReadOnlyList<string> prompts, string input) =>
        prompts.Count > 0 ? prompts : throw new PaliGemmaException($"{input}: no prompt: pass --prompt (or use a manifest whose lines name prompts)");

    private static IEnumerable<BatchItem> Manifest(string path, IReadOnlyList<string> defaultPrompts)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            string where = $"{path}:{lineNumber}";
            JsonElement entry;
            try
            {
                using var document = JsonDocument.Parse(line);
                entry = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new PaliGemmaException($"{where}: not a JSON object ({e.Message})");
            }

            if (entry.ValueKind != JsonValueKind.Object || !entry.TryGetProperty("image", out var image) || image.ValueKind != JsonValueKind.String)
            {
                throw new PaliGemmaException($"{where}: expected {{\"image\": \"...\", \"prompt\": \"...\"}}");
            }

            var prompts = new List<string>();
            if (entry.TryGetProperty("prompt", out var prompt))
            {
                prompts.Add(prompt.ValueKind == JsonValueKind.String ? prompt.GetString()! : throw new PaliGemmaException($"{where}: \"prompt\" must be a string"));
            }

            if (entry.TryGetProperty("prompts", out var many))
            {
                if (many.ValueKind != JsonValueKind.Array || many.EnumerateArray().Any(p => p.ValueKind != JsonValueKind.String))
                {
                    throw new PaliGemmaException($"{where}: \"prompts\" must be an array of strings");
                }

                prompts.AddRange(many.EnumerateArray().Select(p => p.GetString()!));
            }

            string picture = image.GetString()!;
            yield return new BatchItem(
                Path.IsPathRooted(picture) ? picture : Path.Combine(folder, picture),
                prompts.Count > 0 ? prompts : RequirePrompts(defaultPrompts, where));
        }
    }
}
