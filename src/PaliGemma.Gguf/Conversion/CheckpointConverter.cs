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

    /// <summary>Base name of the files and <c>general.name</c>. Default: the checkpoint folder's name (with an adapter: CHECKPOINT-ADAPTER).</summary>
    public string? Name { get; init; }

    /// <summary>Replace existing output files. Default: false (refuse).</summary>
    public bool Overwrite { get; init; }

    /// <summary>A PEFT LoRA adapter folder to merge into the weights while converting. Default: none.</summary>
    public string? LoraAdapterDirectory { get; init; }

    /// <summary>Receives warnings (an adapter whose declared base differs from the checkpoint). Default: none.</summary>
    public Action<string>? Warning { get; init; }
}

/// <summary>The two files a conversion wrote.</summary>
public sealed record ConversionResult(string TextModelPath, string MmprojPath);

/// <summary>Turns a Hugging Face PaliGemma checkpoint folder into a text GGUF and an mmproj GGUF.</summary>
public static class CheckpointConverter
{
    public static ConversionResult Convert(string checkpointDirectory, ConversionOptions options, IProgress<ConversionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        string directory = Path.GetFullPath(checkpointDirectory);
        // A merged adapter gets its own default name, so that it does not replace the base's GGUFs.
        string name = options.Name ?? Path.GetFileName(directory.TrimEnd(Path.DirectorySeparatorChar))
            + (options.LoraAdapterDirectory is { } lora ? "-" + Path.GetFileName(Path.GetFullPath(lora).TrimEnd(Path.DirectorySeparatorChar)) : "");
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
        if (options.LoraAdapterDirectory is { } adapterDirectory)
        {
            var adapter = LoraAdapter.Load(adapterDirectory);
            WarnIfAnotherBase(adapter, checkpoint, options.Warning);
            checkpoint.ApplyAdapter(adapter);
        }

        var vocabulary = TokenizerLoader.Load(directory);
        var normalization = ImageNormalization.Load(directory);

        // Plan both files before writing either, so that a missing tensor fails before any output.
        var text = TextModelConverter.Plan(checkpoint, vocabulary, options.TextType, name);
        var mmproj = MmprojConverter.Plan(checkpoint, normalization, options.MmprojType, name);
        if (checkpoint.UnreadDeltas.FirstOrDefault() is { } unread)
        {
            // e.g. lm_head, which PaliGemma ties to the embedding: merging it would change nothing written.
            throw PaliGemmaException.InFile(options.LoraAdapterDirectory!, $"adapts '{TensorNames.ForMessage(unread.Module)}', which the GGUF files do not contain: it cannot be merged");
        }

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

    /// <summary>
    /// An adapter names its base (<c>base_model_name_or_path</c>); a checkpoint folder seldom says
    /// what it is, so a differing name is only a warning: shapes decide (<see cref="Checkpoint.ApplyAdapter"/>).
    /// </summary>
    private static void WarnIfAnotherBase(LoraAdapter adapter, Checkpoint checkpoint, Action<string>? warning)
    {
        if (warning is null || string.IsNullOrEmpty(adapter.BaseModel))
        {
            return;
        }

        string declared = adapter.BaseModel.TrimEnd('/').Split('/')[^1];
        string folder = Path.GetFileName(checkpoint.Directory.TrimEnd(Path.DirectorySeparatorChar));
        string? nameOrPath = checkpoint.Config.NameOrPath?.TrimEnd('/').Split('/')[^1];
        if (!string.Equals(declared, folder, StringComparison.OrdinalIgnoreCase) && !string.Equals(declared, nameOrPath, StringComparison.OrdinalIgnoreCase))
        {
            warning($"the adapter was trained on '{TensorNames.ForMessage(adapter.BaseModel)}' and the checkpoint is '{folder}'; merging anyway (the shapes match)");
        }
    }
}
