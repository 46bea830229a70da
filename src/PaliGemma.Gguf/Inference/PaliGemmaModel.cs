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
    private readonly Lazy<EmbeddingScaleProbe.Result> _probe;
    private readonly TimeSpan _openTime;
    private readonly RequestQueue _queue;
    private int _disposed;

    private PaliGemmaModel(string textModelPath, string mmprojPath, ModelOptions options, LoadedWeights weights, TimeSpan loadTime, RequestQueue queue)
    {
        TextModelPath = textModelPath;
        MmprojPath = mmprojPath;
        Options = options;
        _weights = weights;
        _openTime = loadTime;

        // The gemma graphs multiply every input row by sqrt(n_embd), embeddings included; upstream
        // has changed this before, so measure it instead of assuming it: at load, or in low-memory mode
        // when the text weights first load (the picture's rows are scaled only when a prefix is assembled).
        _probe = new Lazy<EmbeddingScaleProbe.Result>(() => EmbeddingScaleProbe.Run(weights, options, textModelPath));
        if (!weights.LowMemory)
        {
            _ = _probe.Value;
        }

        _prefix = new PrefixAssembler(weights, textModelPath, () => _probe.Value.GraphScalesEmbeddings);
        _queue = queue;
    }

    public string TextModelPath { get; }

    public string MmprojPath { get; }

    public ModelOptions Options { get; }

    /// <summary>Side of the square the picture is stretched to (224, 448 or 896).</summary>
    public int ImageSize => _weights.ImageSize;

    /// <summary>Image tokens per picture: (ImageSize / 14)^2.</summary>
    public int ImageTokens => _weights.ImageTokens;

    public int EmbeddingSize => _weights.EmbeddingSize;

    /// <summary>The model's training context: prefix plus generated tokens must fit.</summary>
    public int ContextLength => _weights.ContextSize;

    public bool MemoryMapped => _weights.MemoryMapped;

    /// <summary>Time spent loading: at <see cref="Load"/>, plus in low-memory mode every later load of either part.</summary>
    public TimeSpan LoadTime => _openTime + _weights.LaterLoadTime;

    internal EmbeddingScaleProbe.Result ProbeResult => _probe.Value;

    /// <summary>Which native parts are in memory, and how often each was loaded after <see cref="Load"/> (low-memory mode's switches).</summary>
    internal (bool Text, bool Vision, bool VocabularyOnly, int TextLoads, int VisionLoads) NativeParts =>
        (_weights.Resident.Text, _weights.Resident.Vision, _weights.Resident.VocabularyOnly, _weights.TextLoads, _weights.VisionLoads);

    internal LLamaWeights Weights => _weights.Text;

    /// <summary>Requests made and not yet started (a server's queue length).</summary>
    public int WaitingRequests => _queue.Waiting;

    /// <summary>Loads a text GGUF and its mmproj after checking both for what would crash the natives.</summary>
    public static PaliGemmaModel Load(string textModelPath, string mmprojPath, ModelOptions? options = null)
    {
        options ??= new ModelOptions();
        var clock = Stopwatch.StartNew();

        // Every native call that computes (the probe here, then every request) runs on the queue's one
        // thread. llama.cpp's CPU backend synchronises its threads with OpenMP barriers, and OpenMP gives
        // each calling thread a team of its own: a second calling thread means more OpenMP threads than
        // cores, and libgomp then stops spinning at barriers and sleeps in the kernel, which measured
        // 0.54-0.83x the bare engine's decode speed (Benchmarks in README).
        var queue = new RequestQueue(nameof(PaliGemmaModel));
        try
        {
            return queue.Submit(
                _ =>
                {
                    var weights = ModelLoader.Load(textModelPath, mmprojPath, options);
                    try
                    {
                        return new PaliGemmaModel(textModelPath, mmprojPath, options, weights, clock.Elapsed, queue);
                    }
                    catch
                    {
                        weights.Dispose();
                        throw;
                    }
                },
                CancellationToken.None).GetAwaiter().GetResult();
        }
        catch
        {
            queue.Dispose();
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
        var image = LoadPictureAsync(request.ImagePath);
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
        var image = LoadPictureAsync(request.ImagePath);
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
    /// Queues one request on a picture already prepared at <see cref="ImageSize"/>, behind every request made
    /// before it; cancelling <paramref name="cancellationToken"/> while it waits takes it out of the queue.
    /// </summary>
    public Task<GenerationResult> GenerateAsync(PreparedImage image, string prompt, GenerationOptions? options = null, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        options ??= new GenerationOptions();
        options.Validate();
        CheckImage(image);
        int[] textTokens = PrepareText(prompt, options);
        return Submit(Task.FromResult(image), textTokens, options, onToken, cancellationToken);
    }

    /// <summary>
    /// Runs the picture through the vision tower once, for reuse with any number of prompts
    /// (<see cref="GenerateAsync(ImageEmbedding, string, GenerationOptions?, Action{GeneratedToken}?, CancellationToken)"/>).
    /// Queued like any request.
    /// </summary>
    public Task<ImageEmbedding> EmbedImageAsync(string imagePath, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var image = LoadPictureAsync(imagePath);
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
        return _queue.Submit(token => RunWithImageRows(image.Rows, 0, image.Image, textTokens, options, onToken, token), cancellationToken);
    }

    /// <summary>Synchronous <see cref="GenerateAsync(ImageEmbedding, string, GenerationOptions?, Action{GeneratedToken}?, CancellationToken)"/>.</summary>
    public GenerationResult Generate(ImageEmbedding image, string prompt, GenerationOptions options, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default) =>
        Wait(GenerateAsync(image, prompt, options, onToken, cancellationToken));

    /// <summary>Streams the answer to a prompt about a picture already embedded.</summary>
    public IAsyncEnumerable<GeneratedToken> StreamAsync(ImageEmbedding image, string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        TokenStreaming.Stream((onToken, token) => GenerateAsync(image, prompt, options, onToken, token), cancellationToken);

    /// <summary>The most answers <see cref="GenerateTogetherAsync"/> decodes at once.</summary>
    public const int MaxSequencesTogether = 64;

    /// <summary>
    /// Answers several prompts about pictures already embedded in one llama.cpp context, each under its own
    /// sequence id: the prefixes in non-causal batches of several (each bidirectional within itself only), then one
    /// batch per step with the next token of every answer. Each answer has the tokens it would have alone;
    /// on a CPU the gain is in the decode steps, which read the weights once for all answers (README, Benchmarks).
    /// Queued as one request.
    /// </summary>
    public Task<IReadOnlyList<GenerationResult>> GenerateTogetherAsync(IReadOnlyList<(ImageEmbedding Image, string Prompt)> requests, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count is 0 or > MaxSequencesTogether)
        {
            throw new PaliGemmaException($"between 1 and {MaxSequencesTogether} answers can be decoded together, not {requests.Count}");
        }

        options ??= new GenerationOptions();
        options.Validate();
        var prepared = requests.Select(r =>
        {
            CheckOwned(r.Image);
            return (r.Image, TextTokens: PrepareText(r.Prompt, options));
        }).ToList();
        return _queue.Submit<IReadOnlyList<GenerationResult>>(token => RunTogether(prepared, options, token), cancellationToken);
    }

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
        if (Options.BatchSequences > 1)
        {
            await foreach (var result in GenerateInGroupsAsync(items, options, Options.BatchSequences, cancellationToken))
            {
                yield return result;
            }

            yield break;
        }

        // Stopping the enumeration early also cancels the pictures queued ahead.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            await foreach (var (item, image, imageError) in EmbeddedAhead(items, stop.Token))
            {
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

    /// <summary>
    /// <see cref="GenerateBatchAsync"/> with <paramref name="groupSize"/> answers decoded together: the (picture,
    /// prompt) pairs, in order, are cut into groups of that many, each answered by <see cref="GenerateTogetherAsync"/>.
    /// Results still come in input order; refused pictures and prompts take their place among them.
    /// </summary>
    private async IAsyncEnumerable<BatchResult> GenerateInGroupsAsync(IEnumerable<BatchItem> items, GenerationOptions options, int groupSize, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var slots = new List<BatchResult>();
        var group = new List<(ImageEmbedding Image, string Prompt, int Slot)>();
        try
        {
            await foreach (var (item, image, imageError) in EmbeddedAhead(items, stop.Token))
            {
                foreach (string prompt in item.Prompts)
                {
                    string? error = image is null ? imageError : PromptError(prompt, options);
                    slots.Add(new BatchResult(item.ImagePath, prompt, null, error));
                    if (error is null)
                    {
                        group.Add((image!, prompt, slots.Count - 1));
                    }

                    if (group.Count == groupSize)
                    {
                        foreach (var result in await AnswerGroup(slots, group, options, stop.Token))
                        {
                            yield return result;
                        }
                    }
                }
            }

            foreach (var result in await AnswerGroup(slots, group, options, stop.Token))
            {
                yield return result;
            }
        }
        finally
        {
            await stop.CancelAsync();
        }
    }

    /// <summary>
    /// The items with their pictures embedded ahead of their prompts. Normally one picture ahead: the next one
    /// decodes and goes through the vision tower while nothing else waits, and at most two are held at once. In
    /// low-memory mode a chunk of pictures (<see cref="LowMemoryEmbeddingBytes"/> of rows) at a time, so that the
    /// vision tower and the text model take turns once per chunk, not once per picture.
    /// </summary>
    private async IAsyncEnumerable<(BatchItem Item, ImageEmbedding? Image, string? Error)> EmbeddedAhead(IEnumerable<BatchItem> items, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        int lookahead = _weights.LowMemory ? (int)Math.Max(1, LowMemoryEmbeddingBytes / (ImageTokens * (long)EmbeddingSize * sizeof(float))) : 1;
        using var pending = items.GetEnumerator();
        var ahead = new Queue<(BatchItem Item, Task<ImageEmbedding> Embedding)>();
        Refill();
        while (ahead.Count > 0)
        {
            var (item, embedding) = ahead.Dequeue();
            if (ahead.Count == 0)
            {
                // Queued before this item's prompts: the next pictures are encoded first.
                Refill();
            }

            var (image, error) = await Refusable(embedding);
            yield return (item, image, error);
        }

        void Refill()
        {
            while (ahead.Count < lookahead && pending.MoveNext())
            {
                ahead.Enqueue((pending.Current, EmbedImageAsync(pending.Current.ImagePath, cancellationToken)));
            }
        }
    }

    /// <summary>In low-memory mode, how much of the pictures' rows a batch holds at once (32 pictures at 224 px on a 2048-wide model).</summary>
    private const long LowMemoryEmbeddingBytes = 64L << 20;

    /// <summary>Answers the group, fills its slots, and hands back every slot so far in order (both lists are emptied).</summary>
    private async Task<List<BatchResult>> AnswerGroup(List<BatchResult> slots, List<(ImageEmbedding Image, string Prompt, int Slot)> group, GenerationOptions options, CancellationToken cancellationToken)
    {
        if (group.Count > 0)
        {
            var (results, error) = await Refusable(() => GenerateTogetherAsync([.. group.Select(g => (g.Image, g.Prompt))], options, cancellationToken));
            for (int i = 0; i < group.Count; i++)
            {
                slots[group[i].Slot] = slots[group[i].Slot] with { Result = results?[i], Error = error };
            }
        }

        var done = new List<BatchResult>(slots);
        slots.Clear();
        group.Clear();
        return done;
    }

    /// <summary>Why a prompt would be refused (it does not fit the context), or null.</summary>
    private string? PromptError(string prompt, GenerationOptions options)
    {
        try
        {
            PrepareText(prompt, options);
            return null;
        }
        catch (PaliGemmaException e)
        {
            return e.Message;
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

    /// <summary>The picture decodes on the thread pool, in parallel with whatever the model is doing.</summary>
    private Task<PreparedImage> LoadPictureAsync(string path) =>
        Task.Run(() => ImagePreprocessor.Load(path, ImageSize, Options.MaxImagePixels, applyExifOrientation: Options.ApplyExifOrientation), CancellationToken.None);

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
        return RunWithImageRows(embedding.Rows, embedding.EncodeMs, image, textTokens, options, onToken, cancellationToken);
    }

    private ImageEmbedding Embed(PreparedImage image)
    {
        CheckImage(image);
        var clock = Stopwatch.StartNew();
        float[] rows = _prefix.EncodeImage(image);
        return new ImageEmbedding(this, image, rows, clock.Elapsed.TotalMilliseconds);
    }

    private GenerationResult RunWithImageRows(float[] imageRows, double imageEncodeMs, PreparedImage image, int[] textTokens, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        int prefixLength = ImageTokens + textTokens.Length;
        using var decoder = CreateDecoder(prefixLength, options.MaxNewTokens);
        float[] prefix = _prefix.Assemble(imageRows, textTokens);
        return TokenGenerator.Run(_weights.Text, decoder, prefix, prefixLength, imageEncodeMs, image, options, onToken, cancellationToken);
    }

    /// <summary>Several answers decoded together (on the queue's thread): one context, one sequence id each.</summary>
    private IReadOnlyList<GenerationResult> RunTogether(List<(ImageEmbedding Image, int[] TextTokens)> requests, GenerationOptions options, CancellationToken cancellationToken)
    {
        var sequences = requests.Select(r => new SequenceRequest(
            _prefix.Assemble(r.Image.Rows, r.TextTokens), ImageTokens + r.TextTokens.Length, 0, r.Image.Image, options)).ToList();
        int cells = sequences.Sum(r => r.PrefixLength + options.MaxNewTokens);
        using var decoder = new MultiSequenceDecoder(_weights.Text, Options, sequences.Count, cells, MultiSequenceGenerator.BatchSize([.. sequences.Select(r => r.PrefixLength)]));
        return MultiSequenceGenerator.Run(_weights.Text, decoder, sequences, cancellationToken);
    }

    private void CheckOwned(ImageEmbedding image)
    {
        if (image.Model != this)
        {
            throw new PaliGemmaException("the image embedding was made by another model: embed the picture with this one");
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> on the model's thread, in the queue with every other request: for tests and tools
    /// that call the members below (which bypass the queue) on a model that others may be using at the same time.
    /// </summary>
    internal T OnModelThread<T>(Func<T> work) => Wait(_queue.Submit(_ => work(), CancellationToken.None));

    /// <summary>The prefix as rows: image rows from the vision tower, then the text rows, scaled for the graph.</summary>
    /// <remarks>Bypasses the queue: for tests and tools that hold the model alone, or inside <see cref="OnModelThread"/>.</remarks>
    internal float[] BuildPrefix(PreparedImage image, int[] textTokens, out double imageEncodeMs)
    {
        var clock = Stopwatch.StartNew();
        float[] imageRows = _prefix.EncodeImage(image);
        imageEncodeMs = clock.Elapsed.TotalMilliseconds;
        return _prefix.Assemble(imageRows, textTokens);
    }

    /// <summary>The projector's output W x + b for the picture (ImageTokens x EmbeddingSize), before any scaling.</summary>
    /// <remarks>Bypasses the queue: for tests and tools that hold the model alone, or inside <see cref="OnModelThread"/>.</remarks>
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
