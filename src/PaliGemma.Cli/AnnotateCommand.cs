using System.CommandLine;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Cli;

/// <summary>
/// <c>paligemma annotate IMAGE --text "&lt;loc..&gt; cat" --out OUT.png</c>: draws a detection answer
/// (from <c>run</c>, or from any PaliGemma) on the picture it was made for.
/// </summary>
internal static class AnnotateCommand
{
    public static Command Build()
    {
        var image = new Argument<FileInfo>("image") { Description = "The picture the answer is about" };
        var text = new Option<string>("--text") { Description = "The model's answer, e.g. \"<loc0100><loc0200><loc0500><loc0900> cat ; ...\"", Required = true };
        var output = new Option<FileInfo>("--out", "-o") { Description = "The PNG to write", Required = true };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show stack traces on errors" };
        var command = new Command("annotate", "Draw the boxes of a detection answer on its picture") { image, text, output, verbose };
        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), _ =>
        {
            var objects = BoxAnnotator.Annotate(parsed.GetValue(image)!.FullName, parsed.GetValue(text)!, parsed.GetValue(output)!.FullName);
            foreach (var found in objects)
            {
                Console.WriteLine($"{(found.IsValid ? "" : "(invalid) ")}{found.Label}: x1={found.Box.X1} y1={found.Box.Y1} x2={found.Box.X2} y2={found.Box.Y2}");
            }

            return 0;
        }));
        return command;
    }
}
