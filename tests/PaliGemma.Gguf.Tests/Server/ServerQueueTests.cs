using System.Diagnostics;
using System.Net;
using System.Text;
using PaliGemma.Server;
using Xunit;
using Xunit.Abstractions;
using static PaliGemma.Gguf.Tests.Server.ChatCompletionsTests;
using static PaliGemma.Gguf.Tests.Server.ServerLifecycleTests;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// The server's queue is the model's: requests are served in the order they arrived, a request that waits
/// counts in /metrics' queue length, and a waiting client that disconnects leaves the model's queue and frees
/// its place under the cap at once. Each test runs its own server over the shared golden model.
/// </summary>
public sealed class ServerQueueTests(ServedModel served, ITestOutputHelper output) : IClassFixture<ServedModel>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Waiting_requests_are_served_in_the_order_they_arrived()
    {
        const int Waiting = 4;
        await using var server = await PaliGemmaServer.StartAsync(served.Model, new ServerOptions { Port = 0, MaxQueuedRequests = Waiting, MaxTokensCap = 4000 });
        using var client = ServedFixture.NewClient(server.BaseAddress);
        var running = await HoldTheModelAsync(client);

        // Each request is sent once the one before it is waiting in the model's queue, so their arrival order is known.
        var order = new List<int>();
        var requests = new List<Task>();
        for (int i = 0; i < Waiting; i++)
        {
            int index = i;
            requests.Add(Task.Run(async () =>
            {
                using var response = await client.SendAsync(NativeStream(3), HttpCompletionOption.ResponseHeadersRead);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                while (await reader.ReadLineAsync() is { } line && line != "event: token")
                {
                }

                lock (order)
                {
                    order.Add(index);
                }

                await reader.ReadToEndAsync();
            }));
            await WaitForAsync(client, "paligemma_queue_length", i + 1);
        }

        // Letting the model go: the waiting requests run one after another, each starting when the one before ends.
        running.Dispose();
        await Task.WhenAll(requests).WaitAsync(Patience);
        output.WriteLine($"first tokens in the order {string.Join(", ", order)}");
        Assert.Equal(Enumerable.Range(0, Waiting), order);
    }

    [Fact]
    public async Task A_waiting_client_that_disconnects_leaves_the_model_queue_and_frees_its_place()
    {
        await using var server = await PaliGemmaServer.StartAsync(served.Model, new ServerOptions { Port = 0, MaxQueuedRequests = 1, MaxTokensCap = 4000 });
        using var client = ServedFixture.NewClient(server.BaseAddress);
        var running = await HoldTheModelAsync(client);

        // The native stream's headers come with its first token: the client waits for them, then gives up.
        using var giveUp = new CancellationTokenSource();
        var waiting = client.SendAsync(NativeStream(3), HttpCompletionOption.ResponseHeadersRead, giveUp.Token);
        await WaitForAsync(client, "paligemma_queue_length", 1);
        using (var refused = await client.SendAsync(NativeStream(3)))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        }

        // The waiting one goes away while the model is still busy: it leaves the model's queue, not only the count.
        await giveUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        await WaitForAsync(client, "paligemma_queue_length", 0);
        Assert.Equal(1, await MetricAsync(client, "paligemma_requests_running"));
        await WaitForAsync(client, "paligemma_requests_total{endpoint=\"generate\",status=\"499\"}", 1);

        // Its place is free: the next request is admitted and waits, and is answered once the model is free.
        var admitted = client.SendAsync(NativeStream(3));
        var clock = Stopwatch.StartNew();
        while (await MetricAsync(client, "paligemma_queue_length") != 1)
        {
            if (admitted.IsCompleted)
            {
                using var early = await admitted;
                Assert.Fail($"answered {(int)early.StatusCode} before the model was free: {await early.Content.ReadAsStringAsync()}");
            }

            Assert.True(clock.Elapsed < Patience, "the request admitted in the freed place never waited for the model");
            await Task.Delay(20);
        }

        running.Dispose();
        using var answer = await admitted.WaitAsync(Patience);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Contains("event: result", await answer.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    /// <summary>A streamed request of 4000 tokens, read up to its first token: the model is busy until it is disposed.</summary>
    private static async Task<HttpResponseMessage> HoldTheModelAsync(HttpClient client)
    {
        string body = ChatBody(PictureParts(1, "caption en"), ", \"stream\": true, \"max_tokens\": 4000");
        var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") }, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        int dataLines = 0;
        while (dataLines < 2)
        {
            string line = await reader.ReadLineAsync() ?? throw new Xunit.Sdk.XunitException("the stream ended early");
            dataLines += line.StartsWith("data: ", StringComparison.Ordinal) ? 1 : 0;
        }

        Assert.Equal(1, await MetricAsync(client, "paligemma_requests_running"));
        return response;
    }

    private static HttpRequestMessage NativeStream(int maxTokens) => new(HttpMethod.Post, "v1/paligemma/generate")
    {
        Content = new MultipartFormDataContent
        {
            { new ByteArrayContent(File.ReadAllBytes(Infrastructure.GoldenData.ImagePath("shapes224"))), "image", "shapes.png" },
            { new StringContent("caption en"), "prompt" },
            { new StringContent(maxTokens.ToString(System.Globalization.CultureInfo.InvariantCulture)), "max_tokens" },
            { new StringContent("true"), "stream" },
        },
    };

    private static async Task WaitForAsync(HttpClient client, string series, double value)
    {
        var clock = Stopwatch.StartNew();
        while (await MetricAsync(client, series) != value)
        {
            if (clock.Elapsed > Patience)
            {
                string all = string.Join("\n", (await client.GetStringAsync("metrics")).Split('\n').Where(l => l.StartsWith("paligemma_", StringComparison.Ordinal) && !l.Contains("bucket", StringComparison.Ordinal)));
                Assert.Fail($"{series} never reached {value}:\n{all}");
            }

            await Task.Delay(20);
        }
    }
}
