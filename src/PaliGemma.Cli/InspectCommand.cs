using System.CommandLine;
using System.Globalization;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Cli;

/// <summary><c>paligemma inspect FILE.gguf</c>: metadata and tensor table, without loading the model.</summary>
internal static class InspectCommand
{
    public static Command Build()
    {
        var file = new Argument<FileInfo>("file") { Description = "A GGUF file (text model or mmproj)" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show stack traces on errors" };
        var command = new Command("inspect", "Print a GGUF file's metadata and tensor table") { file, verbose };
        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), _ =>
        {
            var gguf = GgufFile.Open(parsed.GetValue(file)!.FullName);
            var output = Console.Out;
            output.WriteLine($"{gguf.Path}: GGUF v{gguf.Version}, {gguf.MetadataList.Count} metadata entries, {gguf.Tensors.Count} tensors, {ConsoleProgress.Bytes(gguf.FileLength)}");
            output.WriteLine();
            foreach (var (key, value) in gguf.MetadataList)
            {
                output.WriteLine($"  {key} = {value}");
            }

            output.WriteLine();
            output.WriteLine($"  {"tensor",-40} {"type",-8} {"dimensions",-22} {"bytes",12}");
            foreach (var tensor in gguf.Tensors)
            {
                output.WriteLine($"  {tensor.Name,-40} {tensor.Type,-8} {tensor.DimensionsText,-22} {tensor.ByteCount.ToString("N0", CultureInfo.InvariantCulture),12}");
            }

            var byType = gguf.Tensors.GroupBy(t => t.Type).Select(g => $"{g.Key}: {g.Count()}");
            output.WriteLine();
            output.WriteLine($"  types: {string.Join(", ", byType)}");
            return 0;
        }));
        return command;
    }
}
