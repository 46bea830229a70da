using Microsoft.AspNetCore.Http;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Server;

/// <summary>
/// What the server adds to the model's own queue, which already serves requests in arrival order
/// (<see cref="PaliGemmaModel"/> is first in, first out, and takes a cancelled request out of the line):
/// a cap on the requests in flight, past which a request is turned away at once (429) instead of
/// piling up memory and latency, the counts /metrics and /health report, and giving freed native memory
/// back once no generation has been in flight for <see cref="ServerOptions.IdleMemoryRelease"/>.
/// </summary>
internal sealed class GenerationQueue : IDisposable
{
    private readonly PaliGemmaModel _model;
    private readonly int _maxQueued;
    private readonly ServerMetrics _metrics;
    private readonly TimeSpan? _idleDelay;
    private readonly Timer _idleRelease;
    private int _admitted;
    private int _submitted;

    public GenerationQueue(PaliGemmaModel model, int maxQueued, TimeSpan? idleMemoryRelease, ServerMetrics metrics)
    {
        _model = model;
        _maxQueued = maxQueued;
        _idleDelay = idleMemoryRelease;
        _metrics = metrics;
        _idleRelease = new Timer(_ => ReleaseIfIdle());
        metrics.Registry.AddBeforeCollectCallback(() =>
        {
            metrics.QueueLength.Set(Waiting);
            metrics.Running.Set(Running);
        });
    }

    /// <summary>Requests waiting for the model: the model's own count.</summary>
    public int Waiting => _model.WaitingRequests;

    /// <summary>Requests the model is working on: handed to it, not waiting, not finished.</summary>
    public int Running => Math.Max(0, Volatile.Read(ref _submitted) - Waiting);

    /// <summary>
    /// Takes a place or throws 429: a place is held from the moment the request is read until its handler
    /// ends (a client that disconnects ends it at once), so at most one running and
    /// <see cref="ServerOptions.MaxQueuedRequests"/> more are in flight. Dispose the ticket to give the place back.
    /// </summary>
    public Ticket Enter()
    {
        if (Interlocked.Increment(ref _admitted) > _maxQueued + 1)
        {
            Interlocked.Decrement(ref _admitted);
            throw new ApiException(StatusCodes.Status429TooManyRequests, $"the server is busy: {_maxQueued} requests are already waiting; retry later", ApiException.RateLimit);
        }

        return new Ticket(this);
    }

    /// <summary>
    /// Queues the generation on the model; a cancelled token takes it out of the model's queue, or stops it at
    /// its next token. Its tokens are counted when the model lets it go, whether or not anyone still waits for it.
    /// </summary>
    public Task<GenerationResult> GenerateAsync(PreparedImage image, string prompt, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _submitted);
        Task<GenerationResult> generation;
        try
        {
            generation = _model.GenerateAsync(image, prompt, options, onToken, cancellationToken);
        }
        catch
        {
            Interlocked.Decrement(ref _submitted);
            throw;
        }

        return CountedAsync(generation);
    }

    /// <summary>Counts the tokens before the caller sees the result (a client reading /metrics after its answer finds them there).</summary>
    private async Task<GenerationResult> CountedAsync(Task<GenerationResult> generation)
    {
        try
        {
            var result = await generation;
            _metrics.GeneratedTokens.Inc(result.Tokens.Count);
            _metrics.PromptTokens.Inc(result.PromptTokens);
            if (result.StopReason != StopReason.Cancelled && result.Timings.DecodedTokens > 0)
            {
                _metrics.DecodeTokensPerSecond.Observe(result.Timings.DecodeTokensPerSecond);
            }

            return result;
        }
        finally
        {
            // The last one out (re)starts the idle clock; a request arriving before it rings keeps it from releasing.
            if (Interlocked.Decrement(ref _submitted) == 0 && _idleDelay is { } delay)
            {
                _idleRelease.Change(delay, Timeout.InfiniteTimeSpan);
            }
        }
    }

    public void Dispose() => _idleRelease.Dispose();

    private void ReleaseIfIdle()
    {
        if (Volatile.Read(ref _submitted) == 0 && NativeHeap.ReleaseFreedMemory())
        {
            _metrics.NativeMemoryReleases.Inc();
        }
    }

    internal sealed class Ticket(GenerationQueue queue) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                Interlocked.Decrement(ref queue._admitted);
            }
        }
    }
}
