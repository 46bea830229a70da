using LLama.Native;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// Quantizes a GGUF that is already converted: a text model through llama.cpp's own quantizer
/// (<c>llama_model_quantize</c>), an mmproj (which llama.cpp's quantizer does not handle) by
/// re-encoding its weight matrices where their rows allow. Output is written to a temporary file
/// and renamed when complete.
/// </summary>
public static class GgufQuantizer
{
    public static void Quantize(string inputPath, string outputPath, string typeName, int threads = 0, bool overwrite = false, IProgress<ConversionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var input = GgufFile.Open(inputPath);
        if (Path.GetFullPath(inputPath) == Path.GetFullPath(outputPath))
        {
            throw PaliGemmaException.InFile(outputPath, "the output must differ from the input");
        }

        if (File.Exists(outputPath) && !overwrite)
        {
            throw PaliGemmaException.InFile(outputPath, "already exists (use --force to overwrite)");
        }

        if (input.Architecture == "clip")
        {
            var type = OutputType.Parse(typeName, OutputType.MmprojTypes, "mmproj type");
            QuantizeMmproj(input, outputPath, type, progress, cancellationToken);
        }
        else
        {
            var type = OutputType.Parse(typeName, OutputType.TextTypes, "text model type");
            ModelFileValidator.ValidateTextModel(input);
            QuantizeTextModel(input, outputPath, type, threads, cancellationToken);
        }
    }

    private static void QuantizeTextModel(GgufFile input, string outputPath, OutputType type, int threads, CancellationToken cancellationToken)
    {
        var quantized = input.Tensors.FirstOrDefault(t => t.Type.IsQuantized());
        if (quantized is not null)
        {
            throw PaliGemmaException.InFile(input.Path, $"is already quantized ({quantized.Name} is {quantized.Type}); quantize from the f32/f16/bf16 file or the checkpoint");
        }

        NativeLibraries.EnsureLoaded();
        string temporary = TemporaryFiles.CreatePath(outputPath);
        try
        {
            var parameters = LLamaModelQuantizeParams.Default();
            parameters.ftype = (LLamaFtype)type.FileType;
            parameters.nthread = threads;
            cancellationToken.ThrowIfCancellationRequested();

            // LLamaQuantizer.Quantize refuses BF16 and loses the reason; the native call accepts it.
            uint status = NativeApi.llama_model_quantize(input.Path, temporary, ref parameters);
            if (status != 0)
            {
                throw PaliGemmaException.InFile(input.Path, $"llama.cpp's quantizer failed to produce {type.Name} (status {status}; run with --verbose for its log)");
            }

            cancellationToken.ThrowIfCancellationRequested();
            File.Move(temporary, outputPath, overwrite: true);
        }
        finally
        {
            TemporaryFiles.Delete(temporary);
        }
    }

    private static void QuantizeMmproj(GgufFile input, string outputPath, OutputType type, IProgress<ConversionProgress>? progress, CancellationToken cancellationToken)
    {
        var metadata = input.MetadataList
            .Where(m => m.Key is not ("general.file_type" or "general.alignment"))
            .Append(new("general.file_type", GgufValue.Of((uint)type.FileType)));
        var plans = input.Tensors.Select(t => new TensorPlan(t.Name, new GgufTensorSource(input, t), MmprojConverter.TensorType(t.Name, t.Dimensions, type))).ToList();
        GgufFileWriter.Write(outputPath, metadata, plans, overwrite: true, progress, cancellationToken);
    }
}
