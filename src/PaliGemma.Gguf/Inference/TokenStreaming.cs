using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace PaliGemma.Gguf.Inference;

/// <summary>Turns a generation that reports tokens through a callback into an async stream of them.</summary>
internal static class TokenStreaming
{
    /// <summary>
    /// Yields each token as <paramref name="generate"/> produces it. A consumer that stops early stops
    /// the generation; a caller's cancellation, whether the request is still queued or already
    /// running, ends the stream with <see cref="OperationCanceledException"/> rather than silently.
    /// </summary>
    public static async IAsyncEnumerable<GeneratedToken> Stream(
        Func<Action<GeneratedToken>, CancellationToken, Task<GenerationResult>> generate,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var channel = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var generation = generate(token => channel.Writer.TryWrite(token), stop.Token);

        _ = generation.ContinueWith(
            t => channel.Writer.TryComplete(t.IsCanceled ? new OperationCanceledException(cancellationToken) : t.Exception?.InnerException),
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        try
        {
            await foreach (var token in channel.Reader.ReadAllAsync(CancellationToken.None))
            {
                yield return token;
            }

            var result = await generation;
            if (result.StopReason == StopReason.Cancelled)
            {
                // Cancelled while running: the caller asked for it (or the model was disposed).
                cancellationToken.ThrowIfCancellationRequested();
                throw new ObjectDisposedException(nameof(PaliGemmaModel), "the model was disposed while this request was running");
            }
        }
        finally
        {
            await stop.CancelAsync();
            await ((Task)generation).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }
}
