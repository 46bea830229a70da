using System.CommandLine;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf.Conversion;

namespace PaliGemma.Cli;

/// <summary><c>paligemma quantize IN.gguf OUT.gguf --type TYPE</c> for a GGUF already converted.</summary>
internal static class QuantizeCommand
{
    public static Command Build()
    {
        var input = new Argument<FileInfo>("input") { Description = "A text model or mmproj GGUF (f32, f16 or bf16)" };
        var output = new Argument<FileInfo>("output") { Description = "The quantized GGUF to write" };
        var type = new Option<string>("--type", "-t")
        {
            Description = $"Text model: {string.Join(", ", OutputType.TextTypes.Select(t => t.Name))}; mmproj: {string.Join(", ", OutputType.MmprojTypes.Select(t => t.Name))}",
            Required = true,
        };
        var threads = new Option<int>("--threads") { Description = "Threads for llama.cpp's quantizer; 0 uses every core", DefaultValueFactory = _ => 0 };
        var force = new Option<bool>("--force", "-f") { Description = "Overwrite the output file" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show llama.cpp's log and stack traces" };
        var command = new Command("quantize", "Quantize a converted GGUF (text model through llama.cpp's quantizer; mmproj where its rows allow)")
        {
            input, output, type, threads, force, verbose,
        };
        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), cancellationToken =>
        {
            NativeLogging.Configure(parsed.GetValue(verbose));
            var progress = ConsoleProgress.ForStandardError();
            string outputPath = parsed.GetValue(output)!.FullName;
            GgufQuantizer.Quantize(parsed.GetValue(input)!.FullName, outputPath, parsed.GetValue(type)!, parsed.GetValue(threads), parsed.GetValue(force), progress, cancellationToken);
            progress.Complete();
            Console.WriteLine(outputPath);
            return 0;
        }));
        return command;
    }
}
