using Microsoft.AspNetCore.Http;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Server;

/// <summary>
/// Admission in front of the shared model: one request generates at a time, the next ones wait in
/// arrival order without holding a thread, and past <see cref="ServerOptions.MaxQueuedRequests"/>
/// waiting ones a request is turned away at once (429) instead of piling up memory and latency.
/// </summary>
internal sealed class GenerationQueue(PaliGemmaModel model, int maxQueued, ServerMetrics metrics)
{
    // SemaphoreSlim queues its async waiters in arrival order.
    private readonly SemaphoreSlim _turn = new(1, 1);
    private int _admitted;

    /// <summary>Requests admitted and not finished: the running one plus those waiting.</summary>
    public int Admitted => Volatile.Read(ref _admitted);

    /// <summary>Takes a place in the queue or throws 429; dispose the ticket to give the place back.</summary>
    public Ticket Enter()
    {
        if (Interlocked.Increment(ref _admitted) > maxQueued + 1)
        {
            Interlocked.Decrement(ref _admitted);
            throw new ApiException(StatusCodes.Status429TooManyRequests, $"the server is busy: {maxQueued} requests are already waiting; retry later", ApiException.RateLimit);
        }

        return new Ticket(this);
    }

    /// <summary>Waits for the model, then generates; a cancelled token leaves the queue or stops the generation at its next token.</summary>
    public async Task<GenerationResult> GenerateAsync(PreparedImage image, string prompt, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        metrics.QueueLength.Inc();
        try
        {
            await _turn.WaitAsync(cancellationToken);
        }
        finally
        {
            metrics.QueueLength.Dec();
        }

        metrics.Running.Inc();
        try
        {
            // The model's loop is synchronous native work: give it a pool thread of its own.
            var result = await Task.Run(() => model.Generate(image, prompt, options, onToken, cancellationToken), CancellationToken.None);
            metrics.GeneratedTokens.Inc(result.Tokens.Count);
            metrics.PromptTokens.Inc(result.PromptTokens);
            if (result.StopReason != StopReason.Cancelled && result.Timings.DecodedTokens > 0)
            {
                metrics.DecodeTokensPerSecond.Observe(result.Timings.DecodeTokensPerSecond);
            }

            return result;
        }
        finally
        {
            metrics.Running.Dec();
            _turn.Release();
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
