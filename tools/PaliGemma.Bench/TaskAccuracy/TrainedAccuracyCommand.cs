using System.CommandLine;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Bench.TaskAccuracy;

/// <summary>
/// <c>paligemma-bench trained-accuracy</c>: converts the trained tiny model of an evaluation folder to
/// each text type with each mmproj type, answers every case greedily, and prints the Markdown table
/// of README's Accuracy section (agreement with the float32 PyTorch reference, task accuracy). The
/// same <see cref="TaskAccuracyTable"/> code feeds TrainedTaskAccuracyTests.
/// </summary>
internal static class TrainedAccuracyCommand
{
    public static readonly string[] DefaultTextTypes = ["f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"];
    public static readonly string[] DefaultMmprojTypes = ["f16", "q8_0"];

    public static Command Build()
    {
        var evaluation = new Option<DirectoryInfo?>("--eval") { Description = "Evaluation folder (eval.json, images/); default: tests/fixtures/trained/eval" };
        var textTypes = new Option<string[]>("--text") { Description = "Text types", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => DefaultTextTypes };
        var mmprojTypes = new Option<string[]>("--mmproj") { Description = "Mmproj types", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => DefaultMmprojTypes };
        var fast = new Option<bool>("--fast") { Description = "Run in the product's fast mode (flash attention, F16 KV cache) instead of exact mode" };
        var threads = new Option<int>("--threads") { Description = "CPU threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var command = new Command("trained-accuracy", "Task accuracy and agreement with the float32 reference of the trained tiny model, per quantization type") { evaluation, textTypes, mmprojTypes, fast, threads };
        command.SetAction(async (parsed, cancellationToken) =>
        {
            string folder = parsed.GetValue(evaluation)?.FullName ?? Path.Combine(BenchCommand.RepositoryRoot(), "tests", "fixtures", "trained", "eval");
            var set = EvaluationSet.Load(folder);
            var texts = parsed.GetValue(textTypes)!.Select(t => OutputType.Parse(t, OutputType.TextTypes, "--text")).ToList();
            var mmprojs = parsed.GetValue(mmprojTypes)!.Select(t => OutputType.Parse(t, OutputType.MmprojTypes, "--mmproj")).ToList();
            var precision = parsed.GetValue(fast) ? Precision.Fast : Precision.Exact;
            string scratch = Path.Combine(Path.GetTempPath(), $"paligemma-trained-accuracy-{Environment.ProcessId}");
            try
            {
                Console.WriteLine($"{set.Cases.Count} cases on {set.Images.Count} pictures ({folder}), greedy, up to {set.MaxNewTokens} tokens, {precision} mode, {parsed.GetValue(threads)} threads");
                Console.WriteLine();
                Console.WriteLine(TaskAccuracyTable.Header);
                Console.WriteLine(TaskAccuracyTable.Reference(set).ToMarkdown());
                foreach (var text in texts)
                {
                    foreach (var mmproj in mmprojs)
                    {
                        Console.Error.WriteLine($"{text.Name} / {mmproj.Name}: converting and answering");
                        var files = CheckpointConverter.Convert(set.ModelDirectory, new ConversionOptions
                        {
                            OutputDirectory = Path.Combine(scratch, $"{text.Name}-{mmproj.Name}"),
                            TextType = text,
                            MmprojType = mmproj,
                        });
                        using var model = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Precision = precision, Threads = parsed.GetValue(threads) });
                        var row = await TaskAccuracyTable.MeasureAsync(model, set, text.Name, mmproj.Name, cancellationToken);
                        Console.WriteLine(row.ToMarkdown());
                    }
                }
            }
            finally
            {
                if (Directory.Exists(scratch))
                {
                    Directory.Delete(scratch, recursive: true);
                }
            }

            return 0;
        });
        return command;
    }
}
