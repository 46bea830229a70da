using System.CommandLine;
using System.Text.Json;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Hub;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Cli.Batch;

/// <summary>
/// <c>paligemma batch</c>: many pictures, one or more prompts each, one model load. One JSONL line per
/// (picture, prompt) as each finishes; each picture goes through the vision tower once for all its prompts.
/// </summary>
internal static class BatchCommand
{
    public static Command Build()
    {
        var inputs = new Argument<string[]>("inputs") { Description = "Folders (their pictures, recursively), globs (\"photos/**/*.jpg\"), JSONL manifests ({\"image\": ..., \"prompt\": ...} or \"prompts\": [...] per line) or pictures", Arity = ArgumentArity.OneOrMore };
        var prompts = new Option<string[]>("--prompt", "-p") { Description = "A prompt applied to every picture (repeat for several); manifest lines may name their own" };
        var output = new Option<FileInfo>("--output", "-o") { Description = "JSONL file the results are appended to, one line per (picture, prompt)", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue a job: skip the (picture, prompt) pairs the output already holds" };
        var shard = new Option<string?>("--shard") { Description = "Take share I of N (0 <= I < N) of the pictures: every N-th, starting at I, so N machines split a job" };
        var vae = new Option<FileInfo?>("--vae") { Description = "Segmentation mask decoder vae-oid.npz: \"segment ...\" answers come with masks [default: $PALIGEMMA_VAE, else next to the model, else ~/.cache/paligemma-gguf/]" };
        var sequences = new Option<int>("--sequences") { Description = "Answers decoded together in one llama.cpp batch, one sequence id each; 1: one at a time, in less memory (README, Benchmarks: what it gains)", DefaultValueFactory = _ => new ModelOptions().BatchSequences };
        var options = GenerationCommandOptions.ForGeneration();

        var command = new Command("batch", "Answer prompts about many pictures with one model load, into a JSONL file")
        {
            inputs, prompts, output, resume, shard, vae, sequences,
        };
        options.AddTo(command);

        command.SetAction(parsed => CommandRunner.Run(options.IsVerbose(parsed), cancellationToken =>
        {
            var generation = options.ReadGenerationOptions(parsed);
            var items = BatchInputs.Expand(parsed.GetValue(inputs)!, parsed.GetValue(prompts) ?? []);
            if (parsed.GetValue(shard) is { } share)
            {
                var (index, count) = BatchInputs.ParseShard(share);
                items = BatchInputs.Shard(items, index, count);
            }

            string outputPath = parsed.GetValue(output)!.FullName;
            using var results = BatchOutput.Open(outputPath, parsed.GetValue(resume));
            int total = items.Sum(i => i.Prompts.Count);
            var todo = items
                .Select(i => i with { Prompts = i.Prompts.Where(p => !results.Done.Contains((i.ImagePath, p))).ToList() })
                .Where(i => i.Prompts.Count > 0)
                .ToList();
            int remaining = todo.Sum(i => i.Prompts.Count);
            if (remaining == 0)
            {
                Console.Error.WriteLine($"nothing to do: {outputPath} holds all {total} answers");
                return 0;
            }

            var files = options.ResolveModel(parsed, cancellationToken);
            var modelOptions = options.ReadModelOptions(parsed) with { BatchSequences = parsed.GetValue(sequences) };

            // A decoder that will be needed is loaded now: a bad file fails before the model loads, not hours in.
            var masks = new MaskSource(Segmentation.FindVae(parsed.GetValue(vae), options.ModelFolder(parsed, files)));
            masks.PrepareFor(todo.SelectMany(i => i.Prompts));
            Console.Error.WriteLine($"loading {Path.GetFileName(files.TextModelPath)} + {Path.GetFileName(files.MmprojPath)}; {remaining} of {total} answers to do");
            using var loaded = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, modelOptions);
            var progress = new BatchProgress(Console.Error, total, total - remaining, !Console.IsErrorRedirected);
            bool interrupted = false;
            try
            {
                Answer(loaded, todo, generation, masks, results, progress, cancellationToken).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                interrupted = true;
            }

            progress.Finish(interrupted);
            return interrupted ? CommandRunner.Interrupted : 0;
        }));
        return command;
    }

    private static async Task Answer(PaliGemmaModel model, List<BatchItem> items, GenerationOptions generation, MaskSource masks, BatchOutput output, BatchProgress progress, CancellationToken cancellationToken)
    {
        await foreach (var answer in model.GenerateBatchAsync(items, generation, cancellationToken))
        {
            // An answer cut short by Ctrl+C is not written: --resume redoes it whole.
            if (answer.Result?.StopReason == StopReason.Cancelled)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            output.Append(Line(answer, model, masks));
            progress.Report(answer.ImagePath, !answer.Succeeded);
        }
    }

    /// <summary>One JSONL line: image, prompt, then run --json's fields (masks included), or the error.</summary>
    internal static byte[] Line(BatchResult answer, PaliGemmaModel model, MaskSource masks)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteString("image", answer.ImagePath);
            writer.WriteString("prompt", answer.Prompt);
            if (answer.Result is { } result)
            {
                var objects = DetectionParser.Parse(result.Text, result.Image.OriginalWidth, result.Image.OriginalHeight);
                objects = masks.AddMasks(objects, result.Image.OriginalWidth, result.Image.OriginalHeight);
                RunResultJson.WriteFields(writer, result, objects, model, ProcessMemory.PeakResidentBytes());
            }
            else
            {
                writer.WriteString("error", answer.Error);
            }

            writer.WriteEndObject();
        }

        return buffer.ToArray();
    }
}
