using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Tokenizer;

namespace PaliGemma.Gguf.Conversion;

/// <summary>Options of <see cref="CheckpointConverter.Convert"/>; every property has a documented default.</summary>
public sealed record ConversionOptions
{
    /// <summary>Folder for the GGUF files. Default: the checkpoint folder.</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Type of the text model's weights. Default: F16.</summary>
    public OutputType TextType { get; init; } = OutputType.F16;

    /// <summary>Type of the mmproj's weights. Default: F16.</summary>
    public OutputType MmprojType { get; init; } = OutputType.F16;

    /// <summary>Base name of the files and <c>general.name</c>. Default: the checkpoint folder's name.</summary>
    public string? Name { get; init; }

    /// <summary>Replace existing output files. Default: false (refuse).</summary>
    public bool Overwrite { get; init; }
}

/// <summary>The two files a conversion wrote.</summary>
public sealed record ConversionResult(string TextModelPath, string MmprojPath);

/// <summary>Turns a Hugging Face PaliGemma checkpoint folder into a text GGUF and an mmproj GGUF.</summary>
public static class CheckpointConverter
{
    public static ConversionResult Convert(string checkpointDirectory, ConversionOptions options, IProgress<ConversionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        string directory = Path.GetFullPath(checkpointDirectory);
        string name = options.Name ?? Path.GetFileName(directory.TrimEnd(Path.DirectorySeparatorChar));
        string outputDirectory = Path.GetFullPath(options.OutputDirectory ?? directory);
        var result = new ConversionResult(
            Path.Combine(outputDirectory, $"{name}.{options.TextType.Name}.gguf"),
            Path.Combine(outputDirectory, $"{name}.mmproj.{options.MmprojType.Name}.gguf"));

        if (!options.Overwrite)
        {
            foreach (string path in new[] { result.TextModelPath, result.MmprojPath }.Where(File.Exists))
            {
                throw PaliGemmaException.InFile(path, "already exists (use --force to overwrite)");
            }
        }

        using var checkpoint = Checkpoint.Open(directory);
        var vocabulary = TokenizerLoader.Load(directory);
        var normalization = ImageNormalization.Load(directory);

        // Plan both files before writing either, so that a missing tensor fails before any output.
        var text = TextModelConverter.Plan(checkpoint, vocabulary, options.TextType, name);
        var mmproj = MmprojConverter.Plan(checkpoint, normalization, options.MmprojType, name);

        GgufFileWriter.Write(result.TextModelPath, text.Metadata, text.Tensors, options.Overwrite, progress, cancellationToken);
        try
        {
            GgufFileWriter.Write(result.MmprojPath, mmproj.Metadata, mmproj.Tensors, options.Overwrite, progress, cancellationToken);
        }
        catch
        {
            // Half a conversion is no conversion: do not leave a text model without its mmproj.
            File.Delete(result.TextModelPath);
            throw;
        }

        return result;
    }
}
