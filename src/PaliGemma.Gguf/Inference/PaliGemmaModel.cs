using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using LLama;
using LLama.Common;
using LLama.Native;
using LLama.Sampling;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// A PaliGemma model (text GGUF + mmproj GGUF) loaded once, answering any number of
/// (image, prompt) requests. Requests from several threads are served one at a time, in order:
/// the object is safe to share, and each request computes exactly what it would alone.
/// </summary>
public sealed class PaliGemmaModel : IDisposable
{
    private const string MediaMarker = "<__media__>";

    private readonly LLamaWeights _weights;
    private readonly MtmdWeights _mtmd;
    private readonly TokenEmbeddingTable _tokenEmbeddings;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly float _imageRowScale;
    private readonly float _textRowScale;
    private bool _disposed;

    private PaliGemmaModel(string textModelPath, string mmprojPath, ModelOptions options, LLamaWeights weights, MtmdWeights mtmd, TokenEmbeddingTable tokenEmbeddings, int imageSize, int imageTokens, bool memoryMapped, TimeSpan loadTime)
    {
        TextModelPath = textModelPath;
        MmprojPath = mmprojPath;
        Options = options;
        _weights = weights;
        _mtmd = mtmd;
        _tokenEmbeddings = tokenEmbeddings;
        ImageSize = imageSize;
        ImageTokens = imageTokens;
        MemoryMapped = memoryMapped;
        LoadTime = loadTime;
        EmbeddingSize = weights.EmbeddingSize;
        ContextLength = weights.ContextSize;

        // The gemma graphs multiply every input row by sqrt(n_embd), embeddings included; upstream
        // has changed this before, so measure it instead of assuming it.
        ProbeResult = EmbeddingScaleProbe.Run(this);
        float sqrtEmbedding = MathF.Sqrt(EmbeddingSize);
        _imageRowScale = ProbeResult.GraphScalesEmbeddings ? 1f / sqrtEmbedding : 1f;
        _textRowScale = ProbeResult.GraphScalesEmbeddings ? 1f : sqrtEmbedding;
    }

    public string TextModelPath { get; }

    public string MmprojPath { get; }

    public ModelOptions Options { get; }

    /// <summary>Side of the square the picture is stretched to (224, 448 or 896).</summary>
    public int ImageSize { get; }

    /// <summary>Image tokens per picture: (ImageSize / 14)^2.</summary>
    public int ImageTokens { get; }

    public int EmbeddingSize { get; }

    /// <summary>The model's training context: prefix plus generated tokens must fit.</summary>
    public int ContextLength { get; }

    public bool MemoryMapped { get; }

    public TimeSpan LoadTime { get; }

    internal EmbeddingScaleProbe.Result ProbeResult { get; }

    internal LLamaWeights Weights => _weights;

    /// <summary>Loads a text GGUF and its mmproj after checking both for what would crash the natives.</summary>
    public static PaliGemmaModel Load(string textModelPath, string mmprojPath, ModelOptions? options = null)
    {
        options ??= new ModelOptions();
        if (options.Threads < 1 || options.GpuLayers < 0)
        {
            throw new PaliGemmaException("threads must be >= 1 and GPU layers >= 0");
        }

        var clock = Stopwatch.StartNew();
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
            var mtmdParameters = MtmdContextParams.Default();
            mtmdParameters.NThreads = options.Threads;
            mtmdParameters.UseGpu = options.GpuLayers > 0;
            mtmdParameters.PrintTimings = false;
            mtmdParameters.MediaMarker = MediaMarker;
            // Measured on SigLIP So400m at 224 px, 2 CPU threads: flash attention makes the vision
            // encoder slower (1.69 s vs 1.27 s) and less exact, so it is off in both precisions.
            mtmdParameters.FlashAttentionType = LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_DISABLED;
            mtmd = MtmdWeights.LoadFromFile(mmprojPath, weights, mtmdParameters);
            table = new TokenEmbeddingTable(textFile);
            return new PaliGemmaModel(textModelPath, mmprojPath, options, weights, mtmd, table, imageSize, imageTokens, memoryMap, clock.Elapsed);
        }
        catch (Exception e) when (e is not PaliGemmaException)
        {
            table?.Dispose();
            mtmd?.Dispose();
            weights?.Dispose();
            throw new PaliGemmaException($"llama.cpp could not load {textModelPath} with {mmprojPath}: {e.Message}", e);
        }
        catch
        {
            table?.Dispose();
            mtmd?.Dispose();
            weights?.Dispose();
            throw;
        }
    }

    /// <summary>llama.cpp's CPU backend repacks these types into an anonymous copy at load.</summary>
    private static bool HasRepackedTensors(GgufFile file) =>
        file.Tensors.Any(t => t.Type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.IQ4_NL);

    /// <summary>Token ids of the prefix's text part: BOS, the prompt, then "\n" as its own piece (big_vision).</summary>
    public int[] TokenizePrompt(string prompt)
    {
        var bos = _weights.Vocab.BOS ?? throw new PaliGemmaException($"{TextModelPath}: the vocabulary has no BOS token");
        var ids = new List<int> { (int)bos };
        ids.AddRange(_weights.Tokenize(prompt, false, true, Encoding.UTF8).Select(t => (int)t));
        ids.AddRange(_weights.Tokenize("\n", false, true, Encoding.UTF8).Select(t => (int)t));
        return ids.ToArray();
    }

    /// <summary>Runs one request; <paramref name="onToken"/> sees each token as it is generated.</summary>
    public async Task<GenerationResult> GenerateAsync(GenerationRequest request, GenerationOptions? options = null, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        options ??= new GenerationOptions();
        options.Validate();
        var image = await Task.Run(() => ImagePreprocessor.Load(request.ImagePath, ImageSize, Options.MaxImagePixels), cancellationToken);
        int[] textTokens = PrepareText(image, request.Prompt, options);

        // Queued requests wait without holding a thread.
        await _gate.WaitAsync(cancellationToken);
        try
        {
            return await Task.Run(() => Run(image, textTokens, options, onToken, cancellationToken), CancellationToken.None);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Streams the generated text of one request, token by token.</summary>
    public async IAsyncEnumerable<GeneratedToken> StreamAsync(GenerationRequest request, GenerationOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var channel = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

        // A consumer that stops enumerating early stops the generation too, freeing the model.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var generation = GenerateAsync(request, options, token => channel.Writer.TryWrite(token), stop.Token)
            .ContinueWith(t => channel.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        try
        {
            await foreach (var token in channel.Reader.ReadAllAsync(CancellationToken.None))
            {
                yield return token;
            }
        }
        finally
        {
            await stop.CancelAsync();
            await generation;
        }
    }

    /// <summary>Runs one request synchronously.</summary>
    public GenerationResult Generate(GenerationRequest request, GenerationOptions options, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        options.Validate();
        return Generate(ImagePreprocessor.Load(request.ImagePath, ImageSize, Options.MaxImagePixels), request.Prompt, options, onToken, cancellationToken);
    }

    /// <summary>Runs one request on a picture already prepared at <see cref="ImageSize"/>.</summary>
    public GenerationResult Generate(PreparedImage image, string prompt, GenerationOptions options, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        options.Validate();
        int[] textTokens = PrepareText(image, prompt, options);
        _gate.Wait(cancellationToken);
        try
        {
            return Run(image, textTokens, options, onToken, cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Checks the request before it waits for the model; returns the prefix's text tokens.</summary>
    private int[] PrepareText(PreparedImage image, string prompt, GenerationOptions options)
    {
        if (image.Size != ImageSize || image.Rgb.Length != ImageSize * ImageSize * 3)
        {
            throw new PaliGemmaException($"the image is prepared at {image.Size} px but the model takes {ImageSize} px");
        }

        int[] textTokens = TokenizePrompt(prompt);
        CheckFits(ImageTokens + textTokens.Length, options.MaxNewTokens);
        return textTokens;
    }

    /// <summary>One request, with the model to itself (the caller holds the gate).</summary>
    private GenerationResult Run(PreparedImage image, int[] textTokens, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        int prefixLength = ImageTokens + textTokens.Length;
        using var decoder = CreateDecoder(prefixLength, options.MaxNewTokens);
        var clock = Stopwatch.StartNew();
        float[] prefix = BuildPrefix(image, textTokens, out double imageEncodeMs);
        clock.Restart();
        decoder.DecodePrefix(prefix, prefixLength);
        double prefillMs = clock.Elapsed.TotalMilliseconds;

        using var sampler = CreateSampler(options);
        var decoded = new StreamingTokenDecoder(Encoding.UTF8, _weights) { DecodeSpecialTokens = true };
        var tokens = new List<int>();
        var text = new StringBuilder();
        var stop = StopReason.MaxTokens;
        clock.Restart();
        int decodedTokens = 0;
        while (tokens.Count < options.MaxNewTokens)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                stop = StopReason.Cancelled;
                break;
            }

            // Sample also accepts the token into the chain: accepting it again would count it twice
            // for any stateful sampler (penalties, grammars).
            var token = sampler.Sample(decoder.Handle, decoder.LastLogitsIndex);
            if (!options.IgnoreEndOfSequence && _weights.Vocab.EOS is { } eos && token == eos)
            {
                stop = StopReason.EndOfSequence;
                break;
            }

            tokens.Add((int)token);
            decoded.Add(token);
            string piece = decoded.Read();
            text.Append(piece);
            onToken?.Invoke(new GeneratedToken((int)token, piece));
            if (tokens.Count < options.MaxNewTokens)
            {
                decoder.DecodeToken((int)token);
                decodedTokens++;
            }
        }

        var timings = new GenerationTimings(imageEncodeMs, prefillMs, clock.Elapsed.TotalMilliseconds, decodedTokens);
        return new GenerationResult(text.ToString(), tokens, prefixLength, stop, timings, image);
    }

    /// <summary>The prefix as rows: image rows from the vision tower, then the text rows, scaled for the graph.</summary>
    internal float[] BuildPrefix(PreparedImage image, int[] textTokens, out double imageEncodeMs)
    {
        var clock = Stopwatch.StartNew();
        float[] imageRows = EncodeImage(image);
        imageEncodeMs = clock.Elapsed.TotalMilliseconds;

        int dimension = EmbeddingSize;
        var rows = new float[(ImageTokens + textTokens.Length) * dimension];
        for (int i = 0; i < imageRows.Length; i++)
        {
            rows[i] = imageRows[i] * _imageRowScale;
        }

        for (int t = 0; t < textTokens.Length; t++)
        {
            var row = rows.AsSpan((ImageTokens + t) * dimension, dimension);
            ReadTokenEmbedding(textTokens[t], row);
            if (_textRowScale != 1f)
            {
                for (int i = 0; i < row.Length; i++)
                {
                    row[i] *= _textRowScale;
                }
            }
        }

        return rows;
    }

    /// <summary>The projector's output W x + b for the picture (ImageTokens x EmbeddingSize), before any scaling.</summary>
    internal float[] EncodeImage(PreparedImage image)
    {
        using var bitmap = SafeMtmdEmbed.FromRgbBytes((uint)image.Size, (uint)image.Size, image.Rgb)
            ?? throw new PaliGemmaException("mtmd could not take the image");
        int status = _mtmd.Tokenize(MediaMarker, false, true, [bitmap], out var chunks);
        if (status != 0 || chunks is null)
        {
            throw new PaliGemmaException($"mtmd could not tokenize the image (status {status})");
        }

        using (chunks)
        {
            var chunk = chunks.Enumerate().FirstOrDefault(c => c.Type == SafeMtmdInputChunk.SafeMtmdInputChunkType.Image)
                ?? throw new PaliGemmaException("mtmd produced no image chunk");
            if ((int)chunk.NTokens != ImageTokens)
            {
                throw new PaliGemmaException($"mtmd made {chunk.NTokens} image tokens, expected {ImageTokens}");
            }

            return MtmdNative.EncodeImage(_mtmd.NativeHandle, chunk, ImageTokens, EmbeddingSize);
        }
    }

    internal void ReadTokenEmbedding(int token, Span<float> destination) => _tokenEmbeddings.ReadRow(token, destination);

    internal PrefixLmDecoder CreateDecoder(int prefixLength, int maxNewTokens)
    {
        CheckFits(prefixLength, maxNewTokens);
        return new PrefixLmDecoder(_weights, Options, prefixLength + maxNewTokens, prefixLength);
    }

    private void CheckFits(int prefixLength, int maxNewTokens)
    {
        if (prefixLength + maxNewTokens > ContextLength)
        {
            throw new PaliGemmaException($"the prompt needs {prefixLength} tokens ({ImageTokens} for the image) plus {maxNewTokens} to generate, more than the model's context of {ContextLength}");
        }
    }

    private static ISamplingPipeline CreateSampler(GenerationOptions options)
    {
        if (options.IsGreedy)
        {
            return new GreedySamplingPipeline();
        }

        return new SeedOrderSamplingPipeline(options.Temperature, options.TopP, options.TopK, options.Seed ?? (uint)Random.Shared.Next());
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _tokenEmbeddings.Dispose();
        _mtmd.Dispose();
        _weights.Dispose();
        _gate.Dispose();
    }
}
