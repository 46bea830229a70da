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
        var model = new Option<string?>("--model", "-m") { Description = "Text model GGUF (with --mmproj), or a Hugging Face Hub repository OWNER/NAME" };
        var mmproj = new Option<FileInfo?>("--mmproj") { Description = "Vision (mmproj) GGUF (with --model)" };
        var modelPath = new Option<string?>("--model-path", "--model_path") { Description = "Folder with one text GGUF and one mmproj GGUF, a Hugging Face checkpoint folder, or a Hub repository OWNER/NAME" };
        var hub = HubCommandOptions.Create();
        var maxTokens = new Option<int>("--max-tokens-to-generate", "--max_tokens_to_generate", "-n") { Description = "Most tokens to generate per answer", DefaultValueFactory = _ => 100 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature (with --do-sample); 0 means greedy", DefaultValueFactory = _ => 0.8f };
        var topP = new Option<float>("--top-p", "--top_p") { Description = "Nucleus sampling threshold (with --do-sample)", DefaultValueFactory = _ => 0.9f };
        var topK = new Option<int>("--top-k", "--top_k") { Description = "Keep only the k most likely tokens (with --do-sample); 0 disables", DefaultValueFactory = _ => 0 };
        var doSample = new Option<bool>("--do-sample", "--do_sample") { Description = "Sample instead of greedy decoding (accepts True/False)" };
        var seed = new Option<uint?>("--seed") { Description = "Random seed for sampling: each answer starts from it, as a separate run would" };
        var threads = new Option<int>("--threads", "-t") { Description = "CPU threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var onlyCpu = new Option<bool>("--only-cpu", "--only_cpu") { Description = "Never offload to a GPU (accepts True/False)" };
        var gpuLayers = new Option<int>("--gpu-layers", "-ngl") { Description = "Layers to offload when a GPU backend is installed", DefaultValueFactory = _ => 0 };
        var exact = new Option<bool>("--exact") { Description = "Flash attention off and an F32 KV cache: closest to the reference, slower" };
        var mmap = new Option<bool?>("--mmap") { Description = "Memory-map the text model (true/false) [default: chosen per file type]" };
        var outType = new Option<string>("--outtype") { Description = "Text model type when converting a checkpoint folder", DefaultValueFactory = _ => OutputType.F16.Name };
        var mmprojType = new Option<string>("--mmproj-type") { Description = "mmproj type when converting a checkpoint folder", DefaultValueFactory = _ => OutputType.F16.Name };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Generate exactly --max-tokens-to-generate tokens, past end-of-sequence (benchmarks)" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show llama.cpp/mtmd logs and stack traces" };

        var command = new Command("batch", "Answer prompts about many pictures with one model load, into a JSONL file")
        {
            inputs, prompts, output, resume, shard, model, mmproj, modelPath, maxTokens, temperature, topP, topK, doSample, seed,
            threads, onlyCpu, gpuLayers, exact, mmap, outType, mmprojType, ignoreEos, verbose, hub.Revision, hub.Token, hub.CacheDir,
        };

        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), cancellationToken =>
        {
            var generation = new GenerationOptions
            {
                MaxNewTokens = parsed.GetValue(maxTokens),
                DoSample = parsed.GetValue(doSample),
                Temperature = parsed.GetValue(temperature),
                TopP = parsed.GetValue(topP),
                TopK = parsed.GetValue(topK),
                Seed = parsed.GetValue(seed),
                IgnoreEndOfSequence = parsed.GetValue(ignoreEos),
            };
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

            var files = RunCommand.ResolveModel(parsed, hub, parsed.GetValue(model), parsed.GetValue(mmproj), parsed.GetValue(modelPath), parsed.GetValue(outType)!, parsed.GetValue(mmprojType)!, cancellationToken);
            bool isVerbose = parsed.GetValue(verbose);
            var modelOptions = new ModelOptions
            {
                Threads = parsed.GetValue(threads),
                GpuLayers = parsed.GetValue(onlyCpu) ? 0 : parsed.GetValue(gpuLayers),
                Precision = parsed.GetValue(exact) ? Precision.Exact : Precision.Fast,
                MemoryMap = parsed.GetValue(mmap),
                NativeLog = isVerbose ? line => Console.Error.WriteLine(line) : null,
            };
            Console.Error.WriteLine($"loading {Path.GetFileName(files.TextModelPath)} + {Path.GetFileName(files.MmprojPath)}; {remaining} of {total} answers to do");
            using var loaded = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, modelOptions);
            var progress = new BatchProgress(Console.Error, total, total - remaining, !Console.IsErrorRedirected);
            bool interrupted = false;
            try
            {
                Answer(loaded, todo, generation, results, progress, cancellationToken).GetAwaiter().GetResult();
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

    private static async Task Answer(PaliGemmaModel model, List<BatchItem> items, GenerationOptions generation, BatchOutput output, BatchProgress progress, CancellationToken cancellationToken)
    {
        await foreach (var answer in model.GenerateBatchAsync(items, generation, cancellationToken))
        {
            // An answer cut short by Ctrl+C is not written: --resume redoes it whole.
            if (answer.Result?.StopReason == StopReason.Cancelled)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            output.Append(Line(answer, model));
            progress.Report(answer.ImagePath, !answer.Succeeded);
        }
    }

    private static byte[] Line(BatchResult answer, PaliGemmaModel model)
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
