using System.Diagnostics;
using System.Runtime.CompilerServices;
using LLama;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// A PaliGemma model (text GGUF + mmproj GGUF) loaded once, answering any number of (image, prompt)
/// requests. The object is safe to share between threads: requests, synchronous or asynchronous,
/// are served one at a time in the order they were made, each computing exactly what it would alone.
/// </summary>
/// <remarks>
/// <see cref="Dispose"/> rejects requests still waiting (their tasks fail with
/// <see cref="ObjectDisposedException"/>), cancels the one running (it returns what it generated,
/// with <see cref="StopReason.Cancelled"/>) and returns once native work has stopped.
/// </remarks>
public sealed class PaliGemmaModel : IDisposable
{
    private readonly LoadedWeights _weights;
    private readonly PrefixAssembler _prefix;
    private readonly RequestQueue _queue;
    private int _disposed;

    private PaliGemmaModel(string textModelPath, string mmprojPath, ModelOptions options, LoadedWeights weights, TimeSpan loadTime)
    {
        TextModelPath = textModelPath;
        MmprojPath = mmprojPath;
        Options = options;
        _weights = weights;
        LoadTime = loadTime;

        // The gemma graphs multiply every input row by sqrt(n_embd), embeddings included; upstream
        // has changed this before, so measure it instead of assuming it.
        ProbeResult = EmbeddingScaleProbe.Run(weights, options, textModelPath);
        _prefix = new PrefixAssembler(weights, textModelPath, ProbeResult.GraphScalesEmbeddings);
        _queue = new RequestQueue(nameof(PaliGemmaModel));
    }

    public string TextModelPath { get; }

    public string MmprojPath { get; }

    public ModelOptions Options { get; }

    /// <summary>Side of the square the picture is stretched to (224, 448 or 896).</summary>
    public int ImageSize => _weights.ImageSize;

    /// <summary>Image tokens per picture: (ImageSize / 14)^2.</summary>
    public int ImageTokens => _weights.ImageTokens;

    public int EmbeddingSize => _weights.Text.EmbeddingSize;

    /// <summary>The model's training context: prefix plus generated tokens must fit.</summary>
    public int ContextLength => _weights.Text.ContextSize;

    public bool MemoryMapped => _weights.MemoryMapped;

    public TimeSpan LoadTime { get; }

    internal EmbeddingScaleProbe.Result ProbeResult { get; }

    internal LLamaWeights Weights => _weights.Text;

    /// <summary>Requests made and not yet started.</summary>
    internal int WaitingRequests => _queue.Waiting;

    /// <summary>Loads a text GGUF and its mmproj after checking both for what would crash the natives.</summary>
    public static PaliGemmaModel Load(string textModelPath, string mmprojPath, ModelOptions? options = null)
    {
        options ??= new ModelOptions();
        var clock = Stopwatch.StartNew();
        var weights = ModelLoader.Load(textModelPath, mmprojPath, options);
        try
        {
            return new PaliGemmaModel(textModelPath, mmprojPath, options, weights, clock.Elapsed);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Token ids of the prefix's text part: BOS, the prompt, then "\n" as its own piece (big_vision).</summary>
    public int[] TokenizePrompt(string prompt) => _prefix.TokenizePrompt(prompt);

    /// <summary>Runs one request; <paramref name="onToken"/> sees each token as it is generated (on the model's thread).</summary>
    public Task<GenerationResult> GenerateAsync(GenerationRequest request, GenerationOptions? options = null, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        options ??= new GenerationOptions();
        options.Validate();
        int[] textTokens = PrepareText(request.Prompt, options);

        // The picture decodes now, in parallel with whatever the model is doing; the request's place
        // in the queue is taken now too, so arrival order holds whatever the picture costs to decode.
        var image = Task.Run(() => ImagePreprocessor.Load(request.ImagePath, ImageSize, Options.MaxImagePixels), CancellationToken.None);
        return Submit(image, textTokens, options, onToken, cancellationToken);
    }

    /// <summary>
    /// Streams the generated text of one request, token by token. Leaving the loop early stops the
    /// generation; cancelling <paramref name="cancellationToken"/>, while queued or running, throws
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    public IAsyncEnumerable<GeneratedToken> StreamAsync(GenerationRequest request, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        TokenStreaming.Stream((onToken, token) => GenerateAsync(request, options, onToken, token), cancellationToken);

    /// <summary>Runs one request synchronously, waiting its turn behind earlier requests.</summary>
    public GenerationResult Generate(GenerationRequest request, GenerationOptions options, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        options.Validate();
        int[] textTokens = PrepareText(request.Prompt, options);
        var image = Task.Run(() => ImagePreprocessor.Load(request.ImagePath, ImageSize, Options.MaxImagePixels), CancellationToken.None);
        return Wait(Submit(image, textTokens, options, onToken, cancellationToken));
    }

    /// <summary>Runs one request on a picture already prepared at <see cref="ImageSize"/>.</summary>
    public GenerationResult Generate(PreparedImage image, string prompt, GenerationOptions options, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        options.Validate();
        CheckImage(image);
        int[] textTokens = PrepareText(prompt, options);
        return Wait(Submit(Task.FromResult(image), textTokens, options, onToken, cancellationToken));
    }

    /// <summary>
    /// Runs the picture through the vision tower once, for reuse with any number of prompts
    /// (<see cref="GenerateAsync(ImageEmbedding, string, GenerationOptions?, Action{GeneratedToken}?, CancellationToken)"/>).
    /// Queued like any request.
    /// </summary>
    public Task<ImageEmbedding> EmbedImageAsync(string imagePath, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var image = Task.Run(() => ImagePreprocessor.Load(imagePath, ImageSize, Options.MaxImagePixels), CancellationToken.None);
        return _queue.Submit(_ => Embed(image.GetAwaiter().GetResult()), cancellationToken, image);
    }

    /// <summary>Runs a picture already prepared at <see cref="ImageSize"/> through the vision tower once.</summary>
    public Task<ImageEmbedding> EmbedImageAsync(PreparedImage image, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CheckImage(image);
        return _queue.Submit(_ => Embed(image), cancellationToken);
    }

    /// <summary>Synchronous <see cref="EmbedImageAsync(PreparedImage, CancellationToken)"/>.</summary>
    public ImageEmbedding EmbedImage(PreparedImage image, CancellationToken cancellationToken = default) =>
        Wait(EmbedImageAsync(image, cancellationToken));

    /// <summary>
    /// Answers a prompt about a picture already embedded: the same tokens as a request with the
    /// picture itself, without running the vision tower again. <see cref="GenerationTimings.ImageEncodeMs"/> is 0.
    /// </summary>
    public Task<GenerationResult> GenerateAsync(ImageEmbedding image, string prompt, GenerationOptions? options = null, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CheckOwned(image);
        options ??= new GenerationOptions();
        options.Validate();
        int[] textTokens = PrepareText(prompt, options);
        return _queue.Submit(token => RunWithImageRows(image.ScaledRows, 0, image.Image, textTokens, options, onToken, token), cancellationToken);
    }

    /// <summary>Synchronous <see cref="GenerateAsync(ImageEmbedding, string, GenerationOptions?, Action{GeneratedToken}?, CancellationToken)"/>.</summary>
    public GenerationResult Generate(ImageEmbedding image, string prompt, GenerationOptions options, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default) =>
        Wait(GenerateAsync(image, prompt, options, onToken, cancellationToken));

    /// <summary>Streams the answer to a prompt about a picture already embedded.</summary>
    public IAsyncEnumerable<GeneratedToken> StreamAsync(ImageEmbedding image, string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        TokenStreaming.Stream((onToken, token) => GenerateAsync(image, prompt, options, onToken, token), cancellationToken);

    /// <summary>
    /// Answers every prompt of every item, in order, one result per (picture, prompt) as each
    /// finishes. Each picture goes through the vision tower once, and the next picture decodes while
    /// the current one is answered. A picture that cannot be read, or a prompt that does not fit,
    /// becomes a result with an <see cref="BatchResult.Error"/> and the batch goes on.
    /// </summary>
    public async IAsyncEnumerable<BatchResult> GenerateBatchAsync(IEnumerable<BatchItem> items, GenerationOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        options ??= new GenerationOptions();
        options.Validate();
        // Stopping the enumeration early also cancels the picture queued ahead.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var pending = items.GetEnumerator();
        try
        {
            // The next picture is queued before the current one's prompts, so it decodes and goes
            // through the vision tower while nothing else is waiting; at most two are held at once.
            var next = pending.MoveNext() ? (Item: pending.Current, Embedding: EmbedImageAsync(pending.Current.ImagePath, stop.Token)) : default;
            while (next.Item is not null)
            {
                var (item, embedding) = next;
                next = pending.MoveNext() ? (pending.Current, EmbedImageAsync(pending.Current.ImagePath, stop.Token)) : default;
                var (image, imageError) = await Refusable(embedding);
                foreach (string prompt in item.Prompts)
                {
                    if (image is null)
                    {
                        yield return new BatchResult(item.ImagePath, prompt, null, imageError);
                        continue;
                    }

                    var (result, promptError) = await Refusable(() => GenerateAsync(image, prompt, options, null, stop.Token));
                    yield return new BatchResult(item.ImagePath, prompt, result, promptError);
                }
            }
        }
        finally
        {
            await stop.CancelAsync();
        }
    }

    /// <summary>The result, or the one-line message of a refusal (PaliGemmaException): bugs still throw.</summary>
    private static async Task<(T? Value, string? Error)> Refusable<T>(Task<T> task)
        where T : class
    {
        try
        {
            return (await task, null);
        }
        catch (PaliGemmaException e)
        {
            return (null, e.Message);
        }
    }

    private static Task<(T? Value, string? Error)> Refusable<T>(Func<Task<T>> start)
        where T : class
    {
        try
        {
            return Refusable(start());
        }
        catch (PaliGemmaException e)
        {
            return Task.FromResult<(T?, string?)>((null, e.Message));
        }
    }

    private bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    private Task<GenerationResult> Submit(Task<PreparedImage> image, int[] textTokens, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken) =>
        _queue.Submit(token => Run(image.GetAwaiter().GetResult(), textTokens, options, onToken, token), cancellationToken, image);

    /// <summary>A synchronous caller's wait: never on the model's own thread, where it would wait for itself.</summary>
    private T Wait<T>(Task<T> request)
    {
        if (_queue.IsServingThread)
        {
            throw new InvalidOperationException("a request cannot wait for the model from inside another request's token callback");
        }

        return request.GetAwaiter().GetResult();
    }

    private void CheckImage(PreparedImage image)
    {
        if (image.Size != ImageSize || image.Rgb.Length != ImageSize * ImageSize * 3)
        {
            throw new PaliGemmaException($"the image is prepared at {image.Size} px but the model takes {ImageSize} px");
        }
    }

    /// <summary>Checks the request before it waits for the model; returns the prefix's text tokens.</summary>
    private int[] PrepareText(string prompt, GenerationOptions options)
    {
        int[] textTokens = TokenizePrompt(prompt);
        CheckFits(ImageTokens + textTokens.Length, options.MaxNewTokens);
        return textTokens;
    }

    /// <summary>One request, with the model to itself (on the queue's thread).</summary>
    private GenerationResult Run(PreparedImage image, int[] textTokens, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        var embedding = Embed(image);
        return RunWithImageRows(embedding.ScaledRows, embedding.EncodeMs, image, textTokens, options, onToken, cancellationToken);
    }

    private ImageEmbedding Embed(PreparedImage image)
    {
        CheckImage(image);
        var clock = Stopwatch.StartNew();
        float[] rows = _prefix.ScaleImageRows(_prefix.EncodeImage(image));
        return new ImageEmbedding(this, image, rows, clock.Elapsed.TotalMilliseconds);
    }

    private GenerationResult RunWithImageRows(float[] scaledImageRows, double imageEncodeMs, PreparedImage image, int[] textTokens, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        int prefixLength = ImageTokens + textTokens.Length;
        using var decoder = CreateDecoder(prefixLength, options.MaxNewTokens);
        float[] prefix = _prefix.Assemble(scaledImageRows, textTokens);
        return TokenGenerator.Run(_weights.Text, decoder, prefix, prefixLength, imageEncodeMs, image, options, onToken, cancellationToken);
    }

    private void CheckOwned(ImageEmbedding image)
    {
        if (image.Model != this)
        {
            throw new PaliGemmaException("the image embedding was made by another model: embed the picture with this one");
        }
    }

    /// <summary>The prefix as rows: image rows from the vision tower, then the text rows, scaled for the graph.</summary>
    /// <remarks>Bypasses the queue: for tests and tools that hold the model alone.</remarks>
    internal float[] BuildPrefix(PreparedImage image, int[] textTokens, out double imageEncodeMs)
    {
        var clock = Stopwatch.StartNew();
        float[] imageRows = _prefix.ScaleImageRows(_prefix.EncodeImage(image));
        imageEncodeMs = clock.Elapsed.TotalMilliseconds;
        return _prefix.Assemble(imageRows, textTokens);
    }

    /// <summary>The projector's output W x + b for the picture (ImageTokens x EmbeddingSize), before any scaling.</summary>
    /// <remarks>Bypasses the queue: for tests and tools that hold the model alone.</remarks>
    internal float[] EncodeImage(PreparedImage image) => _prefix.EncodeImage(image);

    internal void ReadTokenEmbedding(int token, Span<float> destination) => _weights.TokenEmbeddings.ReadRow(token, destination);

    internal PrefixLmDecoder CreateDecoder(int prefixLength, int maxNewTokens)
    {
        CheckFits(prefixLength, maxNewTokens);
        return new PrefixLmDecoder(_weights.Text, Options, prefixLength + maxNewTokens, prefixLength);
    }

    private void CheckFits(int prefixLength, int maxNewTokens)
    {
        if (prefixLength + maxNewTokens > ContextLength)
        {
            throw new PaliGemmaException($"the prompt needs {prefixLength} tokens ({ImageTokens} for the image) plus {maxNewTokens} to generate, more than the model's context of {ContextLength}");
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Waits for the running request to leave native code before the handles go.
        _queue.Dispose();
        _weights.Dispose();
    }
}
