using System.CommandLine;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf.Conversion;

namespace PaliGemma.Tools.Convert;

/// <summary><c>paligemma-convert</c>: a Hugging Face PaliGemma checkpoint folder to GGUF.</summary>
public static class Program
{
    public static int Main(string[] args) => BuildCommand().Parse(args).Invoke();

    public static RootCommand BuildCommand()
    {
        var checkpoint = new Argument<DirectoryInfo>("checkpoint-dir")
        {
            Description = "Hugging Face PaliGemma or PaliGemma 2 checkpoint folder (config.json, *.safetensors, tokenizer)",
        };
        var outDir = new Option<DirectoryInfo?>("--out-dir", "-o") { Description = "Folder for the GGUF files [default: the checkpoint folder]" };
        var outType = new Option<string>("--outtype", "-t")
        {
            Description = $"Text model type: {string.Join(", ", OutputType.TextTypes.Select(t => t.Name))}",
            DefaultValueFactory = _ => OutputType.F16.Name,
        };
        var mmprojType = new Option<string>("--mmproj-type")
        {
            Description = $"mmproj (vision) type: {string.Join(", ", OutputType.MmprojTypes.Select(t => t.Name))}",
            DefaultValueFactory = _ => OutputType.F16.Name,
        };
        var name = new Option<string?>("--name") { Description = "Base name of the output files [default: the checkpoint folder's name]" };
        var force = new Option<bool>("--force", "-f") { Description = "Overwrite existing output files" };
        var lora = new Option<DirectoryInfo?>("--lora") { Description = "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to merge into the weights" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show native logs and stack traces" };

        var command = new RootCommand("Convert a Hugging Face PaliGemma checkpoint into a GGUF text model and a GGUF mmproj (vision) file.")
        {
            checkpoint, outDir, outType, mmprojType, name, force, lora, verbose,
        };
        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), cancellationToken =>
        {
            var options = new ConversionOptions
            {
                OutputDirectory = parsed.GetValue(outDir)?.FullName,
                TextType = OutputType.Parse(parsed.GetValue(outType)!, OutputType.TextTypes, "--outtype"),
                MmprojType = OutputType.Parse(parsed.GetValue(mmprojType)!, OutputType.MmprojTypes, "--mmproj-type"),
                Name = parsed.GetValue(name),
                Overwrite = parsed.GetValue(force),
                LoraAdapterDirectory = parsed.GetValue(lora)?.FullName,
                Warning = message => Console.Error.WriteLine($"warning: {message}"),
            };
            var progress = ConsoleProgress.ForStandardError();
            var result = CheckpointConverter.Convert(parsed.GetValue(checkpoint)!.FullName, options, progress, cancellationToken);
            progress.Complete();
            Console.WriteLine(result.TextModelPath);
            Console.WriteLine(result.MmprojPath);
            return 0;
        }));
        return command;
    }
}
