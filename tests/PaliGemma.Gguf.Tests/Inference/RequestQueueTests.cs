using System.Collections.Concurrent;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// The model's request queue on a real model: arrival order across synchronous and asynchronous
/// callers, cancellation while queued, and Dispose with requests queued and running. A request whose
/// token callback blocks holds the model, so the others provably wait in the queue. On the trained
/// tiny model, with requests whose answers begin with different tokens, so a request handed another's
/// answer shows.
/// </summary>
[Trait("Category", "Trained")]
public sealed class RequestQueueTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>The holding request's case first, then two others; their reference answers start differently.</summary>
    private static readonly IReadOnlyList<TrainedCase> Cases = TrainedEval.DifferentAnswers(3, c => c.GreedyTokens[0]);

    private static GenerationRequest Request => Cases[0].Request;

    private static GenerationOptions OneToken => new() { MaxNewTokens = 1, IgnoreEndOfSequence = true };

    [Fact]
    public async Task Requests_are_served_in_arrival_order_whether_synchronous_or_asynchronous()
    {
        var model = TestModels.LoadTrained();
        using var holder = new ModelHolder(model);
        var served = new ConcurrentQueue<(int Index, int Token)>();
        var requests = new List<Task>();
        const int Count = 8;
        for (int i = 1; i <= Count; i++)
        {
            int index = i;
            var request = Cases[index % Cases.Count].Request;
            void Record(GeneratedToken token) => served.Enqueue((index, token.Id));

            // Alternate the two paths: a blocked synchronous caller must not overtake queued async ones.
            requests.Add(index % 2 == 1
                ? StartThread(() => model.Generate(request, OneToken, Record))
                : model.GenerateAsync(request, OneToken, Record));
            await WaitUntil(() => model.WaitingRequests == index);
        }

        holder.Release();
        await Task.WhenAll(requests).WaitAsync(Patience);

        // In arrival order, and each with the first token of its own request's answer.
        Assert.Equal(Enumerable.Range(1, Count).Select(i => (i, Cases[i % Cases.Count].GreedyTokens[0])), served);
    }

    [Fact]
    public async Task A_stream_cancelled_while_queued_throws_OperationCanceledException()
    {
        var model = TestModels.LoadTrained();
        using var holder = new ModelHolder(model);
        using var cancellation = new CancellationTokenSource();
        await using var stream = model.StreamAsync(Request, OneToken, cancellation.Token).GetAsyncEnumerator();
        var first = stream.MoveNextAsync().AsTask();
        await WaitUntil(() => model.WaitingRequests == 1);

        await cancellation.CancelAsync();

        // It leaves the queue at once: the model is still held by the first request.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.WaitAsync(Patience));
        Assert.Equal(0, model.WaitingRequests);
        Assert.False(holder.Running.IsCompleted);
    }

    [Fact]
    public async Task A_request_cancelled_while_queued_is_cancelled_without_waiting_for_the_model()
    {
        var model = TestModels.LoadTrained();
        using var holder = new ModelHolder(model);
        using var cancellation = new CancellationTokenSource();
        var queued = model.GenerateAsync(Cases[1].Request, OneToken, cancellationToken: cancellation.Token);
        var after = model.GenerateAsync(Cases[2].Request, OneToken);
        await WaitUntil(() => model.WaitingRequests == 2);

        await cancellation.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued.WaitAsync(Patience));
        Assert.False(holder.Running.IsCompleted);
        holder.Release();
        Assert.Equal(Cases[2].GreedyTokens.Take(1), (await after.WaitAsync(Patience)).Tokens);
        Assert.Equal(Cases[0].GreedyTokens.Take(1), (await holder.Running.WaitAsync(Patience)).Tokens);
    }

    [Fact]
    public async Task Dispose_rejects_queued_requests_cancels_the_running_one_and_waits_for_it()
    {
        var files = TestModels.ConvertedTrained();
        var model = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Threads = 1 });
        var holder = new ModelHolder(model, new GenerationOptions { MaxNewTokens = 20, IgnoreEndOfSequence = true });
        var queued = Cases.Select(c => model.GenerateAsync(c.Request, OneToken)).ToList();
        await WaitUntil(() => model.WaitingRequests == 3);

        var dispose = Task.Run(model.Dispose);

        foreach (var request in queued)
        {
            await Assert.ThrowsAsync<ObjectDisposedException>(() => request.WaitAsync(Patience));
        }

        // The running request is inside its token callback: Dispose must not free the handles under it.
        await Task.Delay(300);
        Assert.False(dispose.IsCompleted, "Dispose returned while a request was still running");
        holder.Release();
        await dispose.WaitAsync(Patience);
        var interrupted = await holder.Running.WaitAsync(Patience);
        Assert.Equal(StopReason.Cancelled, interrupted.StopReason);
        Assert.Equal(Cases[0].GreedyTokens.Take(1), interrupted.Tokens);

        Assert.Throws<ObjectDisposedException>(() => model.Generate(Request, OneToken));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () =>
        {
            await foreach (var _ in model.StreamAsync(Request, OneToken))
            {
            }
        });
        model.Dispose();
    }

    [Fact]
    public void Waiting_for_the_model_inside_a_token_callback_is_an_error_not_a_deadlock()
    {
        var model = TestModels.LoadTrained();
        Exception? inner = null;

        model.Generate(Request, OneToken, _ => inner = Record.Exception(() => model.Generate(Request, OneToken)));

        Assert.IsType<InvalidOperationException>(inner);
    }

    private static Task StartThread(Action action)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        new Thread(() =>
        {
            try
            {
                action();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }).Start();
        return done.Task;
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for the queue");
            await Task.Delay(5);
        }
    }

    /// <summary>Holds the model with a request blocked in its first token callback until released.</summary>
    private sealed class ModelHolder : IDisposable
    {
        private readonly ManualResetEventSlim _release = new();

        public ModelHolder(PaliGemmaModel model, GenerationOptions? options = null)
        {
            using var started = new ManualResetEventSlim();
            Running = model.GenerateAsync(Request, options ?? OneToken, _ =>
            {
                started.Set();
                _release.Wait();
            });
            Assert.True(started.Wait(Patience), "the holding request never started");
        }

        public Task<GenerationResult> Running { get; }

        public void Release() => _release.Set();

        public void Dispose()
        {
            Release();
            Running.Wait(Patience);
            _release.Dispose();
        }
    }
}
