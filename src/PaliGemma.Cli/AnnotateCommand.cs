using System.CommandLine;
using System.Text.Json;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Cli;

/// <summary>
/// <c>paligemma annotate IMAGE --text "&lt;loc..&gt; cat" [--out OUT.png] [--json] [--masks-dir DIR] [--vae FILE]</c>:
/// draws a detection or segmentation answer (from <c>run</c>, or from any PaliGemma) on the picture it was made for,
/// without loading a model.
/// </summary>
internal static class AnnotateCommand
{
    public static Command Build()
    {
        var image = new Argument<FileInfo>("image") { Description = "The picture the answer is about" };
        var text = new Option<string>("--text") { Description = "The model's answer, e.g. \"<loc0100><loc0200><loc0500><loc0900> cat ; ...\"", Required = true };
        var output = new Option<FileInfo?>("--out", "-o") { Description = "The PNG to write (boxes, labels, and masks of a segmentation answer)" };
        var vae = new Option<FileInfo?>("--vae") { Description = "The segmentation mask decoder, vae-oid.npz [default: $PALIGEMMA_VAE, else ~/.cache/paligemma-gguf/vae-oid.npz]" };
        var json = new Option<bool>("--json") { Description = "Print the objects as JSON (with COCO RLE masks) instead of one line each" };
        var masksDir = new Option<DirectoryInfo?>("--masks-dir") { Description = "Write one 8-bit PNG mask per segmented object to this folder" };
        var ignoreOrientation = new Option<bool>("--ignore-exif-orientation") { Description = GenerationCommandOptions.IgnoreExifOrientationDescription };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show stack traces on errors" };
        var command = new Command("annotate", "Draw the boxes and masks of a detection or segmentation answer on its picture") { image, text, output, vae, json, masksDir, ignoreOrientation, verbose };
        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), _ =>
        {
            string picture = parsed.GetValue(image)!.FullName;
            bool oriented = !parsed.GetValue(ignoreOrientation);
            var (width, height) = ImagePreprocessor.DecodedSize(picture, oriented);
            var objects = DetectionParser.Parse(parsed.GetValue(text)!, width, height);
            objects = Segmentation.AddMasks(objects, width, height, parsed.GetValue(vae), modelFolder: null);
            if (parsed.GetValue(output) is { } outputFile)
            {
                BoxAnnotator.Annotate(picture, objects, outputFile.FullName, oriented);
            }

            if (parsed.GetValue(masksDir) is { } folder)
            {
                Segmentation.WriteMaskPngs(folder.FullName, objects);
            }

            if (parsed.GetValue(json))
            {
                using var stream = Console.OpenStandardOutput();
                using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
                writer.WriteStartObject();
                writer.WriteNumber("width", width);
                writer.WriteNumber("height", height);
                RunResultJson.WriteObjects(writer, objects);
                writer.WriteEndObject();
                writer.Flush();
                stream.Write("\n"u8);
                return 0;
            }

            foreach (var found in objects)
            {
                string mask = found.Mask is { } m ? $" mask_pixels={m.PixelCount}" : "";
                Console.WriteLine($"{(found.IsValid ? "" : "(invalid) ")}{found.Label}: x1={found.Box.X1} y1={found.Box.Y1} x2={found.Box.X2} y2={found.Box.Y2}{mask}");
            }

            return 0;
        }));
        return command;
    }
}
