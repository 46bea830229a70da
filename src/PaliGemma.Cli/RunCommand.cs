using System.CommandLine;
using System.Text.Json;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Hub;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Cli;

/// <summary>
/// <c>paligemma run</c>: image + prompt -> text. Accepts the option names of the original PyTorch
/// inference.py (<c>--model_path</c>, <c>--do_sample True</c>, ...) as aliases.
/// </summary>
internal static class RunCommand
{
    public static Command Build()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Text model GGUF (with --mmproj), or a Hugging Face Hub repository (OWNER/NAME: pulled and converted on first use)" };
        var mmproj = new Option<FileInfo?>("--mmproj") { Description = "Vision (mmproj) GGUF (with --model)" };
        var modelPath = new Option<string?>("--model-path", "--model_path")
        {
            Description = "Folder with one text GGUF and one mmproj GGUF, a Hugging Face checkpoint folder (converted on first use, then cached), or a Hub repository OWNER/NAME that is no local folder (pulled on first use)",
        };
        var hub = HubCommandOptions.Create();
        var image = new Option<FileInfo>("--image-file-path", "--image_file_path", "--image", "-i") { Description = "The picture", Required = true };
        var prompt = new Option<string>("--prompt", "-p") { Description = "The prompt, e.g. \"caption en\", \"answer en what is this?\", \"detect cat\"", Required = true };
        var maxTokens = new Option<int>("--max-tokens-to-generate", "--max_tokens_to_generate", "-n") { Description = "Most tokens to generate", DefaultValueFactory = _ => 100 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature (with --do-sample); 0 means greedy", DefaultValueFactory = _ => 0.8f };
        var topP = new Option<float>("--top-p", "--top_p") { Description = "Nucleus sampling threshold (with --do-sample)", DefaultValueFactory = _ => 0.9f };
        var topK = new Option<int>("--top-k", "--top_k") { Description = "Keep only the k most likely tokens (with --do-sample); 0 disables", DefaultValueFactory = _ => 0 };
        var doSample = new Option<bool>("--do-sample", "--do_sample") { Description = "Sample instead of greedy decoding (accepts True/False)" };
        var seed = new Option<uint?>("--seed") { Description = "Random seed for sampling (same seed, same output)" };
        var threads = new Option<int>("--threads", "-t") { Description = "CPU threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var onlyCpu = new Option<bool>("--only-cpu", "--only_cpu") { Description = "Never offload to a GPU (accepts True/False)" };
        var gpuLayers = new Option<int>("--gpu-layers", "-ngl") { Description = "Layers to offload when a GPU backend is installed", DefaultValueFactory = _ => 0 };
        var exact = new Option<bool>("--exact") { Description = "Flash attention off and an F32 KV cache: closest to the reference, slower" };
        var mmap = new Option<bool?>("--mmap") { Description = "Memory-map the text model (true/false) [default: chosen per file type]" };
        var outType = new Option<string>("--outtype") { Description = "Text model type when converting a checkpoint folder", DefaultValueFactory = _ => OutputType.F16.Name };
        var mmprojType = new Option<string>("--mmproj-type") { Description = "mmproj type when converting a checkpoint folder", DefaultValueFactory = _ => OutputType.F16.Name };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Generate exactly --max-tokens-to-generate tokens, past end-of-sequence (benchmarks)" };
        var annotate = new Option<FileInfo?>("--annotate") { Description = "Write the picture with the detected boxes drawn and labelled to this PNG (for \"detect ...\" prompts)" };
        var vae = new Option<FileInfo?>("--vae") { Description = "Segmentation mask decoder vae-oid.npz [default: $PALIGEMMA_VAE, else next to the model, else ~/.cache/paligemma-gguf/]" };
        var masksDir = new Option<DirectoryInfo?>("--masks-dir") { Description = "Write one 8-bit PNG mask per segmented object to this folder (for \"segment ...\" prompts)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (text, tokens, timings) at the end instead of streaming text" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show llama.cpp/mtmd logs and stack traces" };

        var command = new Command("run", "Generate text for a picture and a prompt")
        {
            model, mmproj, modelPath, image, prompt, maxTokens, temperature, topP, topK, doSample, seed, threads,
            onlyCpu, gpuLayers, exact, mmap, outType, mmprojType, ignoreEos, annotate, vae, masksDir, json, verbose,
            hub.Revision, hub.Token, hub.CacheDir,
        };

        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), cancellationToken =>
        {
            bool isJson = parsed.GetValue(json);
            bool isVerbose = parsed.GetValue(verbose);
            var files = ResolveModel(parsed, hub, parsed.GetValue(model), parsed.GetValue(mmproj), parsed.GetValue(modelPath), parsed.GetValue(outType)!, parsed.GetValue(mmprojType)!, cancellationToken);
            ModelOptions modelOptions = new()
            {
                Threads = parsed.GetValue(threads),
                GpuLayers = parsed.GetValue(onlyCpu) ? 0 : parsed.GetValue(gpuLayers),
                Precision = parsed.GetValue(exact) ? Precision.Exact : Precision.Fast,
                MemoryMap = parsed.GetValue(mmap),
                NativeLog = isVerbose ? line => Console.Error.WriteLine(line) : null,
            };
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
            // Check both files, then prepare the picture before loading the model: a bad picture
            // fails in milliseconds. The picture is sized from the mmproj, so that comes first.
            int textEmbedding = ModelFileValidator.ValidateTextModel(GgufFile.Open(files.TextModelPath));
            var (imageSize, _) = ModelFileValidator.ValidateMmproj(GgufFile.Open(files.MmprojPath), textEmbedding);
            var picture = ImagePreprocessor.Load(parsed.GetValue(image)!.FullName, imageSize);

            if (!isJson)
            {
                Console.Error.WriteLine($"loading {Path.GetFileName(files.TextModelPath)} + {Path.GetFileName(files.MmprojPath)}");
                modelOptions = modelOptions with { LoadProgress = new LoadingProgress(Console.Error, !Console.IsErrorRedirected) };
            }

            using var loaded = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, modelOptions);
            Action<GeneratedToken>? stream = isJson ? null : token =>
            {
                Console.Out.Write(token.Text);
                Console.Out.Flush();
            };
            var result = loaded.Generate(picture, parsed.GetValue(prompt)!, generation, stream, cancellationToken);

            if (!isJson)
            {
                Console.Out.WriteLine();
            }

            var objects = DetectionParser.Parse(result.Text, picture.OriginalWidth, picture.OriginalHeight);
            objects = Segmentation.AddMasks(objects, picture.OriginalWidth, picture.OriginalHeight, parsed.GetValue(vae), parsed.GetValue(modelPath) ?? Path.GetDirectoryName(files.TextModelPath));
            if (parsed.GetValue(masksDir) is { } folder)
            {
                Segmentation.WriteMaskPngs(folder.FullName, objects);
            }
            if (parsed.GetValue(annotate) is { } annotated)
            {
                BoxAnnotator.Annotate(parsed.GetValue(image)!.FullName, objects, annotated.FullName);
                if (!isJson)
                {
                    int drawn = objects.Count(o => o.IsValid);
                    Console.Error.WriteLine($"{drawn} {(drawn == 1 ? "box" : "boxes")} drawn on {annotated.FullName}");
                }
            }

            if (isJson)
            {
                WriteJson(result, objects, loaded);
            }

            if (result.StopReason == StopReason.Cancelled)
            {
                Console.Error.WriteLine("interrupted");
                return CommandRunner.Interrupted;
            }

            return 0;
        }));
        return command;
    }

    internal static ModelFiles ResolveModel(ParseResult parsed, HubCommandOptions hub, string? model, FileInfo? mmproj, string? modelPath, string outType, string mmprojType, CancellationToken cancellationToken)
    {
        // A Hub name where a path is expected, naming no local file or folder: pull it.
        string? hubReference = HubRepositoryName.IsHubReference(modelPath) ? modelPath : HubRepositoryName.IsHubReference(model) && mmproj is null && modelPath is null ? model : null;
        if (hubReference is not null)
        {
            if (mmproj is not null || (model is not null && modelPath is not null))
            {
                throw new PaliGemmaException("a Hub repository stands for both files: pass it alone, without --mmproj");
            }

            return HubCommandOptions.Resolve(HubRepositoryName.TryParse(hubReference)!, parsed, hub, outType, mmprojType, alwaysAskHub: false, cancellationToken);
        }

        if (modelPath is not null)
        {
            if (model is not null || mmproj is not null)
            {
                throw new PaliGemmaException("pass either --model-path or --model with --mmproj, not both");
            }

            var progress = ConsoleProgress.ForStandardError();
            var files = ModelLocator.Resolve(
                Path.GetFullPath(modelPath),
                OutputType.Parse(outType, OutputType.TextTypes, "--outtype"),
                OutputType.Parse(mmprojType, OutputType.MmprojTypes, "--mmproj-type"),
                progress,
                cancellationToken);
            progress.Complete();
            return files;
        }

        if (model is null || mmproj is null)
        {
            throw new PaliGemmaException("no model: pass --model-path FOLDER, or --model TEXT.gguf with --mmproj MMPROJ.gguf");
        }

        return new ModelFiles(Path.GetFullPath(model), mmproj.FullName, false);
    }

    private static void WriteJson(GenerationResult result, IReadOnlyList<DetectedObject> objects, PaliGemmaModel model)
    {
        using var stream = Console.OpenStandardOutput();
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        RunResultJson.Write(writer, result, objects, model, ProcessMemory.PeakResidentBytes());
        writer.Flush();
        stream.Write("\n"u8);
    }
}
