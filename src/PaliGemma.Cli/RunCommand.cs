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
        var options = GenerationCommandOptions.ForGeneration();
        var image = new Option<FileInfo>("--image-file-path", "--image_file_path", "--image", "-i") { Description = "The picture", Required = true };
        var prompt = new Option<string>("--prompt", "-p") { Description = "The prompt, e.g. \"caption en\", \"answer en what is this?\", \"detect cat\"", Required = true };
        var annotate = new Option<FileInfo?>("--annotate") { Description = "Write the picture with the detected boxes drawn and labelled to this PNG (for \"detect ...\" prompts)" };
        var vae = new Option<FileInfo?>("--vae") { Description = "Segmentation mask decoder vae-oid.npz [default: $PALIGEMMA_VAE, else next to the model, else ~/.cache/paligemma-gguf/]" };
        var masksDir = new Option<DirectoryInfo?>("--masks-dir") { Description = "Write one 8-bit PNG mask per segmented object to this folder (for \"segment ...\" prompts)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (text, tokens, timings) at the end instead of streaming text" };

        var command = new Command("run", "Generate text for a picture and a prompt") { image, prompt, annotate, vae, masksDir, json };
        options.AddTo(command);

        command.SetAction(parsed => CommandRunner.Run(options.IsVerbose(parsed), cancellationToken =>
        {
            bool isJson = parsed.GetValue(json);
            var files = options.ResolveModel(parsed, cancellationToken);
            var modelOptions = options.ReadModelOptions(parsed);
            var generation = options.ReadGenerationOptions(parsed);
            // Check both files, then prepare the picture before loading the model: a bad picture
            // fails in milliseconds. The picture is sized from the mmproj, so that comes first.
            int textEmbedding = ModelFileValidator.ValidateTextModel(GgufFile.Open(files.TextModelPath));
            var (imageSize, _) = ModelFileValidator.ValidateMmproj(GgufFile.Open(files.MmprojPath), textEmbedding);
            var picture = ImagePreprocessor.Load(parsed.GetValue(image)!.FullName, imageSize, applyExifOrientation: modelOptions.ApplyExifOrientation);

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
            objects = Segmentation.AddMasks(objects, picture.OriginalWidth, picture.OriginalHeight, parsed.GetValue(vae), options.ModelFolder(parsed, files));
            if (parsed.GetValue(masksDir) is { } folder)
            {
                Segmentation.WriteMaskPngs(folder.FullName, objects);
            }
            if (parsed.GetValue(annotate) is { } annotated)
            {
                BoxAnnotator.Annotate(parsed.GetValue(image)!.FullName, objects, annotated.FullName, modelOptions.ApplyExifOrientation);
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

    private static void WriteJson(GenerationResult result, IReadOnlyList<DetectedObject> objects, PaliGemmaModel model)
    {
        using var stream = Console.OpenStandardOutput();
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        RunResultJson.Write(writer, result, objects, model, ProcessMemory.PeakResidentBytes());
        writer.Flush();
        stream.Write("\n"u8);
    }
}
