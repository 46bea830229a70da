using LLama;
using LLama.Common;
using LLama.Exceptions;
using LLama.Native;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>The native parts of a loaded model: text weights, the mtmd vision context and the token-embedding reader.</summary>
internal sealed class LoadedWeights : IDisposable
{
    public LoadedWeights(LLamaWeights text, MtmdWeights vision, TokenEmbeddingTable tokenEmbeddings, int imageSize, int imageTokens, bool memoryMapped)
    {
        Text = text;
        Vision = vision;
        TokenEmbeddings = tokenEmbeddings;
        ImageSize = imageSize;
        ImageTokens = imageTokens;
        MemoryMapped = memoryMapped;
    }

    public LLamaWeights Text { get; }

    public MtmdWeights Vision { get; }

    public TokenEmbeddingTable TokenEmbeddings { get; }

    public int ImageSize { get; }

    public int ImageTokens { get; }

    public bool MemoryMapped { get; }

    public void Dispose()
    {
        TokenEmbeddings.Dispose();
        Vision.Dispose();
        Text.Dispose();
    }
}

/// <summary>
/// Checks a text GGUF and its mmproj for what would crash the natives, then loads both through
/// LLamaSharp. What loading can throw (llama.cpp refusing the file, the file vanishing or being
/// unreadable) becomes a <see cref="PaliGemmaException"/> naming both files; anything else is a bug
/// and surfaces as itself.
/// </summary>
internal static class ModelLoader
{
    /// <summary>mtmd's placeholder for the picture in the text it tokenizes.</summary>
    public const string MediaMarker = "<__media__>";

    public static LoadedWeights Load(string textModelPath, string mmprojPath, ModelOptions options)
    {
        if (options.Threads < 1 || options.GpuLayers < 0)
        {
            throw new PaliGemmaException("threads must be >= 1 and GPU layers >= 0");
        }

        var textFile = GgufFile.Open(textModelPath);
        int embedding = ModelFileValidator.ValidateTextModel(textFile);
        var (imageSize, imageTokens) = ModelFileValidator.ValidateMmproj(GgufFile.Open(mmprojPath), embedding);

        NativeLibraries.LogSink = options.NativeLog;
        NativeLibraries.EnsureLoaded();

        bool memoryMap = options.MemoryMap ?? !HasRepackedTensors(textFile);
        var parameters = new ModelParams(textModelPath)
        {
            GpuLayerCount = options.GpuLayers,
            LoadMode = memoryMap ? LLamaLoadMode.MemoryMap : LLamaLoadMode.None,
        };

        LLamaWeights? weights = null;
        MtmdWeights? mtmd = null;
        TokenEmbeddingTable? table = null;
        try
        {
            weights = options.LoadProgress is null
                ? LLamaWeights.LoadFromFile(parameters)
                : LLamaWeights.LoadFromFileAsync(parameters, CancellationToken.None, options.LoadProgress).GetAwaiter().GetResult();
            mtmd = MtmdWeights.LoadFromFile(mmprojPath, weights, VisionParameters(options));
            table = new TokenEmbeddingTable(textFile);
            return new LoadedWeights(weights, mtmd, table, imageSize, imageTokens, memoryMap);
        }
        catch (Exception e) when (e is RuntimeError or IOException or UnauthorizedAccessException)
        {
            // RuntimeError: llama.cpp or mtmd refused the file (LoadWeightsFailedException and kin);
            // I/O: a file vanished or became unreadable between validation and loading.
            Release(table, mtmd, weights);
            throw new PaliGemmaException($"llama.cpp could not load {textModelPath} with {mmprojPath}: {e.Message}", e);
        }
        catch
        {
            Release(table, mtmd, weights);
            throw;
        }
    }

    private static MtmdContextParams VisionParameters(ModelOptions options)
    {
        var parameters = MtmdContextParams.Default();
        parameters.NThreads = options.Threads;
        parameters.UseGpu = options.GpuLayers > 0;
        parameters.PrintTimings = false;
        parameters.MediaMarker = MediaMarker;
        // Measured on SigLIP So400m at 224 px, 2 CPU threads: flash attention makes the vision
        // encoder slower (1.69 s vs 1.27 s) and less exact, so it is off in both precisions.
        parameters.FlashAttentionType = LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_DISABLED;
        return parameters;
    }

    private static void Release(TokenEmbeddingTable? table, MtmdWeights? mtmd, LLamaWeights? weights)
    {
        table?.Dispose();
        mtmd?.Dispose();
        weights?.Dispose();
    }

    /// <summary>llama.cpp's CPU backend repacks these types into an anonymous copy at load.</summary>
    private static bool HasRepackedTensors(GgufFile file) =>
        file.Tensors.Any(t => t.Type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.IQ4_NL);
}
