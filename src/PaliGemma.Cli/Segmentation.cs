using PaliGemma.Gguf;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tasks;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace PaliGemma.Cli;

/// <summary>What <c>run</c> and <c>annotate</c> share for segmentation answers: finding vae-oid.npz, masks, JSON, PNGs.</summary>
internal static class Segmentation
{
    public const string VaeFileName = "vae-oid.npz";
    public const string VaeUrl = "https://storage.googleapis.com/big_vision/paligemma/vae-oid.npz";

    /// <summary>
    /// --vae, else PALIGEMMA_VAE, else vae-oid.npz next to the model, else in the cache folder
    /// ($XDG_CACHE_HOME or ~/.cache, then paligemma-gguf/); null when none exists.
    /// </summary>
    public static string? FindVae(FileInfo? option, string? modelFolder)
    {
        if (option is not null)
        {
            return option.FullName;
        }

        if (Environment.GetEnvironmentVariable("PALIGEMMA_VAE") is { Length: > 0 } fromEnvironment)
        {
            return Path.GetFullPath(fromEnvironment);
        }

        if (modelFolder is not null && File.Exists(Path.Combine(modelFolder, VaeFileName)))
        {
            return Path.Combine(modelFolder, VaeFileName);
        }

        string cacheRoot = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        string cached = Path.Combine(cacheRoot, "paligemma-gguf", VaeFileName);
        return File.Exists(cached) ? cached : null;
    }

    /// <summary>
    /// The objects with their masks when the answer has segmentation groups and a decoder is found; otherwise as they
    /// are, with one line on stderr saying how to get masks.
    /// </summary>
    public static IReadOnlyList<DetectedObject> AddMasks(IReadOnlyList<DetectedObject> objects, int width, int height, FileInfo? vaeOption, string? modelFolder) =>
        new MaskSource(FindVae(vaeOption, modelFolder)).AddMasks(objects, width, height);

    /// <summary>The line that says how to get masks when there is no decoder.</summary>
    public static string NoDecoderHint =>
        $"segmentation codes without masks: download {VaeUrl} and pass --vae FILE, set PALIGEMMA_VAE, or put {VaeFileName} next to the model or in ~/.cache/paligemma-gguf/";

    /// <summary>One 8-bit PNG per object with a mask, the picture's size: the soft mask x 255, 0 outside the box.</summary>
    public static IReadOnlyList<string> WriteMaskPngs(string folder, IReadOnlyList<DetectedObject> objects)
    {
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        for (int index = 0; index < objects.Count; index++)
        {
            if (objects[index].Mask is not { } mask)
            {
                continue;
            }

            string path = Path.Combine(folder, $"{index:D2}-{SafeName(objects[index].Label)}.png");
            using var image = Image.LoadPixelData<L8>(mask.ToPictureMask(), mask.PictureWidth, mask.PictureHeight);
            string temporary = TemporaryFiles.CreatePath(path);
            try
            {
                using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
                {
                    image.Save(stream, new PngEncoder { ColorType = PngColorType.Grayscale, BitDepth = PngBitDepth.Bit8 });
                }

                File.Move(temporary, path, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw PaliGemmaException.InFile(path, $"cannot write the mask: {e.Message.ReplaceLineEndings(" ")}", e);
            }
            finally
            {
                TemporaryFiles.Delete(temporary);
            }

            written.Add(path);
        }

        return written;
    }

    /// <summary>The label as a file name: letters and digits kept (any script), anything else '_'.</summary>
    private static string SafeName(string label)
    {
        string name = new([.. label.Take(40).Select(c => char.IsLetterOrDigit(c) ? c : '_')]);
        return name.Length == 0 ? "object" : name;
    }
}

/// <summary>
/// The mask decoder of one command, for any number of answers: loaded at the first answer with segmentation
/// codes (or at once by <see cref="Preload"/>), and without one the hint printed once, not once per answer.
/// </summary>
internal sealed class MaskSource(string? vaePath)
{
    private MaskDecoder? _decoder;
    private bool _hinted;

    /// <summary>The decoder's file, or null when none was found.</summary>
    public string? VaePath => vaePath;

    /// <summary>Loads the decoder now, so a bad file fails before anything slow starts.</summary>
    public void Preload()
    {
        if (vaePath is not null)
        {
            _decoder ??= MaskDecoder.Load(vaePath);
        }
    }

    /// <summary>
    /// For a job whose prompts are known up front: loads the decoder now if a "segment" prompt will need it (a bad
    /// file fails before the model loads), or prints the hint now if there is none.
    /// </summary>
    public void PrepareFor(IEnumerable<string> prompts)
    {
        if (!prompts.Any(p => p.TrimStart().StartsWith("segment", StringComparison.OrdinalIgnoreCase)))
        {
            return;
        }

        if (vaePath is null)
        {
            Hint();
        }

        Preload();
    }

    /// <summary>The objects with their masks when some have segmentation codes and there is a decoder; otherwise as they are.</summary>
    public IReadOnlyList<DetectedObject> AddMasks(IReadOnlyList<DetectedObject> objects, int width, int height)
    {
        if (!objects.Any(o => o is { IsValid: true, SegmentCodes: not null }))
        {
            return objects;
        }

        if (vaePath is null)
        {
            Hint();
            return objects;
        }

        _decoder ??= MaskDecoder.Load(vaePath);
        return _decoder.AddMasks(objects, width, height);
    }

    private void Hint()
    {
        if (!_hinted)
        {
            Console.Error.WriteLine(Segmentation.NoDecoderHint);
            _hinted = true;
        }
    }
}
