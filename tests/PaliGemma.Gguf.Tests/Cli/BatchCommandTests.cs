using System.Diagnostics;
using System.Text.Json;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Cli;

/// <summary>
/// <c>paligemma batch</c> through the real program on real files: the same tokens as <c>run</c> for
/// each (picture, prompt), a bad picture as an error line, resume after Ctrl+C, shards that add up to
/// the whole job, manifest and glob inputs. The lines are compared with <c>run</c> and with the
/// float32 reference on the trained tiny model, whose answers differ per picture and prompt; resume and
/// shards sample a random-weight model at a high temperature with a fixed seed, which also makes the
/// answers differ, so a mix-up shows.
/// </summary>
public sealed class BatchCommandTests
{
    private const string Model = "tiny-paligemma2-224";
    private static readonly string[] Prompts = ["caption en", "detect cat"];
    private static readonly string[] Sampling = ["--do-sample", "--temperature", "3", "--top-p", "1", "--seed", "11", "-n", "6", "--ignore-eos", "-t", "1"];

    [Fact]
    public void Each_line_has_the_tokens_run_gives_and_the_reference_answer_and_a_bad_picture_is_an_error_line()
    {
        // Two pictures whose captions differ; the prompts are the two the reference answers whole on both.
        var pictures = TrainedEval.DifferentAnswers(2, where: c => c.Prompt == "caption en").Select(c => c.Image).ToList();
        string[] prompts = [.. TrainedEval.WholeCases.Where(c => c.Image == pictures[0]).Select(c => c.Prompt)
            .Where(p => pictures.All(i => TrainedEval.WholeCases.Any(c => c.Image == i && c.Prompt == p))).Take(2)];
        string folder = TestModels.NewFolder("batch-trained");
        foreach (var picture in pictures)
        {
            File.Copy(picture.Path, Path.Combine(folder, picture.Name + ".png"));
        }

        File.WriteAllBytes(Path.Combine(folder, "broken.png"), [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
        string output = Path.Combine(TestModels.NewFolder("batch-out"), "out.jsonl");
        string[] model = TrainedModelArguments();

        var batch = CliProcess.Run("paligemma", TimeSpan.FromMinutes(5), ["batch", .. model, folder, "--prompt", prompts[0], "--prompt", prompts[1], "--output", output, "-n", "24", "-t", "1"]);

        Assert.True(batch.ExitCode == 0, batch.StandardError);
        var lines = ReadLines(output);
        var pictureFiles = Directory.GetFiles(folder).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(pictureFiles.SelectMany(f => prompts.Select(p => (f, p))), lines.Select(l => (l.Image, l.Prompt)));
        Assert.All(lines.Where(l => l.Image.EndsWith("broken.png", StringComparison.Ordinal)), l => Assert.NotNull(l.Error));
        var answered = lines.Where(l => l.Error is null).ToList();
        Assert.Equal(4, answered.Count);
        foreach (var line in answered)
        {
            var reference = TrainedEval.Case($"{Path.GetFileNameWithoutExtension(line.Image)}: {line.Prompt}");
            Assert.Equal(reference.AnswerTokens, line.Tokens);
            var run = CliProcess.Run("paligemma", ["run", .. model, "--image", line.Image, "--prompt", line.Prompt, "--json", "-n", "24", "-t", "1"]);
            Assert.True(run.ExitCode == 0, run.StandardError);
            var tokens = JsonDocument.Parse(run.StandardOutput).RootElement.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToList();
            Assert.Equal(tokens, line.Tokens);
        }

        Assert.True(answered.Select(l => string.Join(',', l.Tokens)).Distinct().Count() > 2, "the answers hardly differ: a mix-up would not show");
    }

    [Fact]
    public async Task An_interrupted_job_leaves_whole_lines_and_resume_completes_it_like_an_uninterrupted_run()
    {
        string pictures = PictureFolder(copies: 6, withBrokenPicture: false);
        string folder = TestModels.NewFolder("batch-resume");
        string whole = Path.Combine(folder, "whole.jsonl");
        string resumed = Path.Combine(folder, "resumed.jsonl");
        string[] job = [pictures, "--prompt", Prompts[0], "--prompt", Prompts[1], "--do-sample", "--temperature", "3", "--top-p", "1", "--seed", "11", "-n", "16", "--ignore-eos", "-t", "1"];

        Assert.Equal(0, Batch([.. job, "--output", whole]).ExitCode);

        using (var process = CliProcess.Start("paligemma", ["batch", .. ModelArguments(), .. job, "--output", resumed]))
        {
            var stderr = process.StandardError.ReadToEndAsync();
            _ = process.StandardOutput.ReadToEndAsync();
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (CountNewlines(resumed) < 3 && !process.HasExited && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }

            Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)));
            string errors = await stderr;
            Assert.True(process.ExitCode == 130, $"the job was not interrupted (exit {process.ExitCode}): {errors}");
        }

        byte[] interrupted = File.ReadAllBytes(resumed);
        Assert.Equal((byte)'\n', interrupted[^1]);
        int kept = ReadLines(resumed).Count;
        Assert.InRange(kept, 3, ReadLines(whole).Count - 1);

        // A line cut by a kill in mid-write (not Ctrl+C, which never cuts one) is dropped by --resume.
        File.AppendAllText(resumed, "{\"image\": \"half a li");
        var again = Batch([.. job, "--output", resumed, "--resume"]);

        Assert.True(again.ExitCode == 0, again.StandardError);
        Assert.Equal(Answers(whole), Answers(resumed));
        var refused = Batch([.. job, "--output", resumed]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("--resume", refused.SingleErrorLine(), StringComparison.Ordinal);
    }

    [Fact]
    public void Shards_are_disjoint_and_together_give_the_whole_job()
    {
        string pictures = PictureFolder(copies: 2, withBrokenPicture: false);
        string folder = TestModels.NewFolder("batch-shards");
        string[] job = [pictures, "--prompt", Prompts[0], .. Sampling];
        string whole = Path.Combine(folder, "whole.jsonl");
        Assert.Equal(0, Batch([.. job, "--output", whole]).ExitCode);

        var shards = Enumerable.Range(0, 3).Select(i =>
        {
            string path = Path.Combine(folder, $"shard{i}.jsonl");
            Assert.Equal(0, Batch([.. job, "--shard", $"{i}/3", "--output", path]).ExitCode);
            return Answers(path);
        }).ToList();

        Assert.All(shards, s => Assert.NotEmpty(s));
        Assert.Equal(Answers(whole).Order(StringComparer.Ordinal), shards.SelectMany(s => s).Order(StringComparer.Ordinal));
        Assert.Equal(1, Batch([.. job, "--shard", "3/3", "--output", Path.Combine(folder, "bad.jsonl")]).ExitCode);
    }

    [Fact]
    public void A_manifest_names_prompts_per_picture_and_a_glob_selects_pictures()
    {
        string pictures = PictureFolder(copies: 1, withBrokenPicture: false);
        string manifest = Path.Combine(pictures, "jobs.jsonl");
        File.WriteAllLines(manifest,
        [
            "{\"image\": \"chelsea-0.png\", \"prompts\": [\"caption en\", \"ocr\"]}",
            "",
            "{\"image\": \"astronaut-0.png\", \"prompt\": \"detect cat\"}",
        ]);
        string output = Path.Combine(TestModels.NewFolder("batch-inputs"), "out.jsonl");

        var batch = Batch([manifest, Path.Combine(pictures, "shapes*.png"), "--prompt", "caption es", "--output", output]);

        Assert.True(batch.ExitCode == 0, batch.StandardError);
        Assert.Equal(
            [
                (Path.Combine(pictures, "chelsea-0.png"), "caption en"),
                (Path.Combine(pictures, "chelsea-0.png"), "ocr"),
                (Path.Combine(pictures, "astronaut-0.png"), "detect cat"),
                (Path.Combine(pictures, "shapes224-0.png"), "caption es"),
            ],
            ReadLines(output).Select(l => (l.Image, l.Prompt)));
    }

    private sealed record Line(string Image, string Prompt, List<int> Tokens, string? Error);

    private static string[] ModelArguments()
    {
        var files = TestModels.Converted(Model);
        return ["--model", files.TextModelPath, "--mmproj", files.MmprojPath];
    }

    private static string[] TrainedModelArguments()
    {
        var files = TestModels.ConvertedTrained();
        return ["--model", files.TextModelPath, "--mmproj", files.MmprojPath];
    }

    private static CliProcess.Result Batch(string[] arguments) => CliProcess.Run("paligemma", TimeSpan.FromMinutes(5), ["batch", .. ModelArguments(), .. arguments]);

    private static string PictureFolder(int copies, bool withBrokenPicture)
    {
        string folder = TestModels.NewFolder("batch-pictures");
        foreach (string name in new[] { "chelsea", "astronaut", "shapes224" })
        {
            for (int i = 0; i < copies; i++)
            {
                File.Copy(GoldenData.ImagePath(name), Path.Combine(folder, $"{name}-{i}.png"));
            }
        }

        if (withBrokenPicture)
        {
            File.WriteAllBytes(Path.Combine(folder, "broken.png"), [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
        }

        return folder;
    }

    private static List<Line> ReadLines(string path) => File.ReadAllLines(path).Select(text =>
    {
        var root = JsonDocument.Parse(text).RootElement;
        return new Line(
            root.GetProperty("image").GetString()!,
            root.GetProperty("prompt").GetString()!,
            root.TryGetProperty("tokens", out var tokens) ? tokens.EnumerateArray().Select(t => t.GetInt32()).ToList() : [],
            root.TryGetProperty("error", out var error) ? error.GetString() : null);
    }).ToList();

    /// <summary>What must not change between runs: picture, prompt and tokens (timings do).</summary>
    private static List<string> Answers(string path) => ReadLines(path).Select(l => $"{l.Image}|{l.Prompt}|{string.Join(',', l.Tokens)}|{l.Error}").ToList();

    private static int CountNewlines(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllBytes(path).Count(b => b == '\n') : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
