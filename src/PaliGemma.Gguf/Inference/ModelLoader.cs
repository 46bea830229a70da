using LLama;
using LLama.Common;
using LLama.Exceptions;
using LLama.Native;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// The native parts of a loaded model: text weights, the mtmd vision context and the token-embedding reader.
/// In low-memory mode the text weights and the vision context are never loaded together: each loads when first
/// asked for and frees the other, and a vocabulary-only load of the text model stays for tokenizing (mtmd
/// needs no more of the text model than its vocabulary and width).
/// </summary>
internal sealed class LoadedWeights : IDisposable
{
    private readonly Func<LLamaWeights>? _loadVocabulary;
    private readonly Func<LLamaWeights>? _loadText;
    private readonly Func<LLamaWeights, MtmdWeights>? _loadVision;

    // Low-memory mode swaps the native parts on the model's thread while other threads may tokenize: a swap and a
    // tokenization never overlap.
    private readonly Lock _swap = new();
    private LLamaWeights? _vocabularyOnly;
    private LLamaWeights? _text;
    private MtmdWeights? _vision;
    private long _loadTicks;

    /// <summary>Both parts loaded, for the whole life of the model.</summary>
    public LoadedWeights(LLamaWeights text, MtmdWeights vision, TokenEmbeddingTable tokenEmbeddings, int imageSize, int imageTokens, bool memoryMapped)
    {
        _text = text;
        EmbeddingSize = text.EmbeddingSize;
        ContextSize = text.ContextSize;
        _vision = vision;
        TokenEmbeddings = tokenEmbeddings;
        ImageSize = imageSize;
        ImageTokens = imageTokens;
        MemoryMapped = memoryMapped;
    }

    /// <summary>
    /// Low-memory mode: the vocabulary and the vision context now; the text weights and the vision context then load
    /// in turn, as needed. mtmd needs a text model, so the vision context is initialised against a vocabulary-only
    /// load, which goes when the text weights come (they carry a vocabulary of their own: keeping both would hold
    /// the 256k-token vocabulary twice beside the text weights) and comes back with the vision context.
    /// </summary>
    /// <param name="embeddingSize">The text model's width, from its GGUF (a vocabulary-only load reports 0).</param>
    /// <param name="contextSize">The text model's training context, from its GGUF.</param>
    public LoadedWeights(LLamaWeights vocabularyOnly, MtmdWeights vision, Func<LLamaWeights> loadVocabulary, Func<LLamaWeights> loadText, Func<LLamaWeights, MtmdWeights> loadVision, TokenEmbeddingTable tokenEmbeddings, int imageSize, int imageTokens, bool memoryMapped, int embeddingSize, int contextSize)
    {
        EmbeddingSize = embeddingSize;
        ContextSize = contextSize;
        _vocabularyOnly = vocabularyOnly;
        _vision = vision;
        _loadVocabulary = loadVocabulary;
        _loadText = loadText;
        _loadVision = loadVision;
        TokenEmbeddings = tokenEmbeddings;
        ImageSize = imageSize;
        ImageTokens = imageTokens;
        MemoryMapped = memoryMapped;
    }

    public bool LowMemory => _loadText is not null;

    public int EmbeddingSize { get; }

    /// <summary>The text model's training context.</summary>
    public int ContextSize { get; }

    /// <summary>Tokenizes with whichever vocabulary is loaded; on any thread (in low-memory mode it waits for a swap in progress).</summary>
    public T WithVocabulary<T>(Func<LLamaWeights, T> use)
    {
        if (!LowMemory)
        {
            return use(_text!);
        }

        lock (_swap)
        {
            // Both are absent only after a text load failed; the vocabulary comes back for the next request.
            return use(_text ?? (_vocabularyOnly ??= Timed(_loadVocabulary!)));
        }
    }

    /// <summary>The text weights; in low-memory mode loading them frees the vision context and the vocabulary-only load (on the model's thread only).</summary>
    public LLamaWeights Text
    {
        get
        {
            if (_text is null)
            {
                lock (_swap)
                {
                    _vision?.Dispose();
                    _vision = null;
                    _vocabularyOnly?.Dispose();
                    _vocabularyOnly = null;
                    _text = Timed(_loadText!);
                    TextLoads++;
                }
            }

            return _text;
        }
    }

    /// <summary>The vision context; in low-memory mode loading it frees the text weights (on the model's thread only).</summary>
    public MtmdWeights Vision
    {
        get
        {
            if (_vision is null)
            {
                LLamaWeights vocabulary;
                lock (_swap)
                {
                    _text?.Dispose();
                    _text = null;
                    vocabulary = _vocabularyOnly ??= Timed(_loadVocabulary!);
                }

                _vision = Timed(() => _loadVision!(vocabulary));
                VisionLoads++;
            }

            return _vision;
        }
    }

    /// <summary>Loads of the text weights after the model was opened (low-memory mode).</summary>
    public int TextLoads { get; private set; }

    /// <summary>Loads of the vision context after the model was opened (low-memory mode).</summary>
    public int VisionLoads { get; private set; }

    /// <summary>Which parts are in memory now.</summary>
    public (bool Text, bool Vision, bool VocabularyOnly) Resident => (_text is not null, _vision is not null, _vocabularyOnly is not null);

    /// <summary>Time spent in the loads made after the model was opened (low-memory mode's switches).</summary>
    public TimeSpan LaterLoadTime => TimeSpan.FromTicks(Interlocked.Read(ref _loadTicks));

    public TokenEmbeddingTable TokenEmbeddings { get; }

    public int ImageSize { get; }

    public int ImageTokens { get; }

    public bool MemoryMapped { get; }

    private T Timed<T>(Func<T> load)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            return load();
        }
        finally
        {
            Interlocked.Add(ref _loadTicks, clock.Elapsed.Ticks);
        }
    }

    public void Dispose()
    {
        TokenEmbeddings.Dispose();
        _vision?.Dispose();
        _text?.Dispose();
        _vocabularyOnly?.Dispose();
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

        if (options.BatchSequences is < 1 or > PaliGemmaModel.MaxSequencesTogether)
        {
            throw new PaliGemmaException($"sequences decoded together must be between 1 and {PaliGemmaModel.MaxSequencesTogether}, not {options.BatchSequences}");
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

        if (options.LowMemory)
        {
            string arch = textFile.Architecture!;
            int context = (int)(textFile.GetInteger($"{arch}.context_length") ?? throw PaliGemmaException.InFile(textModelPath, $"no {arch}.context_length"));
            return LoadInTurns(textModelPath, mmprojPath, options, parameters, textFile, imageSize, imageTokens, memoryMap, embedding, context);
        }

        LLamaWeights? weights = null;
        MtmdWeights? mtmd = null;
        TokenEmbeddingTable? table = null;
        try
        {
            weights = LoadText(parameters, options);
            mtmd = MtmdWeights.LoadFromFile(mmprojPath, weights, VisionParameters(options));
            table = new TokenEmbeddingTable(textFile);
            return new LoadedWeights(weights, mtmd, table, imageSize, imageTokens, memoryMap);
        }
        catch (Exception e) when (IsLoadFailure(e))
        {
            // RuntimeError: llama.cpp or mtmd refused the file (LoadWeightsFailedException and kin);
            // I/O: a file vanished or became unreadable between validation and loading.
            Release(table, mtmd, weights);
            throw LoadFailed(textModelPath, mmprojPath, e);
        }
        catch
        {
            Release(table, mtmd, weights);
            throw;
        }
    }

    /// <summary>
    /// Low-memory mode: the vocabulary and the vision context now (a request starts with the picture), and loaders
    /// for the text weights and the vision context, which <see cref="LoadedWeights"/> calls in turn. The text
    /// weights load at the first prompt; the text GGUF was validated above.
    /// </summary>
    private static LoadedWeights LoadInTurns(string textModelPath, string mmprojPath, ModelOptions options, ModelParams parameters, GgufFile textFile, int imageSize, int imageTokens, bool memoryMap, int embedding, int context)
    {
        LLamaWeights? vocabulary = null;
        MtmdWeights? mtmd = null;
        TokenEmbeddingTable? table = null;
        try
        {
            LLamaWeights LoadVocabulary() => LLamaWeights.LoadFromFile(new ModelParams(textModelPath) { VocabOnly = true, GpuLayerCount = 0 });
            vocabulary = LoadVocabulary();
            mtmd = MtmdWeights.LoadFromFile(mmprojPath, vocabulary, VisionParameters(options));
            table = new TokenEmbeddingTable(textFile);
            return new LoadedWeights(
                vocabulary,
                mtmd,
                () => Guarded(textModelPath, mmprojPath, LoadVocabulary),
                () => Guarded(textModelPath, mmprojPath, () => LoadText(parameters, options)),
                vocabularyOnly => Guarded(textModelPath, mmprojPath, () => MtmdWeights.LoadFromFile(mmprojPath, vocabularyOnly, VisionParameters(options))),
                table,
                imageSize,
                imageTokens,
                memoryMap,
                embedding,
                context);
        }
        catch (Exception e) when (IsLoadFailure(e))
        {
            Release(table, mtmd, vocabulary);
            throw LoadFailed(textModelPath, mmprojPath, e);
        }
        catch
        {
            Release(table, mtmd, vocabulary);
            throw;
        }
    }

    private static T Guarded<T>(string textModelPath, string mmprojPath, Func<T> load)
    {
        try
        {
            return load();
        }
        catch (Exception e) when (IsLoadFailure(e))
        {
            throw LoadFailed(textModelPath, mmprojPath, e);
        }
    }

    private static LLamaWeights LoadText(ModelParams parameters, ModelOptions options) => options.LoadProgress is null
        ? LLamaWeights.LoadFromFile(parameters)
        : LLamaWeights.LoadFromFileAsync(parameters, CancellationToken.None, options.LoadProgress).GetAwaiter().GetResult();

    private static bool IsLoadFailure(Exception e) => e is RuntimeError or IOException or UnauthorizedAccessException;

    private static PaliGemmaException LoadFailed(string textModelPath, string mmprojPath, Exception e) =>
        new($"llama.cpp could not load {textModelPath} with {mmprojPath}: {e.Message}", e);

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
