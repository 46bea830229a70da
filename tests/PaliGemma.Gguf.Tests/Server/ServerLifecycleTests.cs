using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using PaliGemma.Gguf.Tests.Infrastructure;
using PaliGemma.Server;
using Xunit;
using Xunit.Abstractions;
using static PaliGemma.Gguf.Tests.Server.ChatCompletionsTests;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>Cancellation, the queue cap, the native endpoint and the metrics, on a real server.</summary>
public sealed class ServerLifecycleTests(ServedModel served, ITestOutputHelper output) : IClassFixture<ServedModel>
{
    [Fact]
    public async Task A_client_that_disconnects_stops_its_generation()
    {
        const int Asked = 2000;
        using var client = served.Client();
        double tokensBefore = await MetricAsync(client, "paligemma_generated_tokens_total");

        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = new StringContent(ChatBody(PictureParts(1, "caption en"), $", \"stream\": true, \"max_tokens\": {Asked}"), Encoding.UTF8, "application/json"),
        };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        // The role chunk comes before the model starts; wait for the first token's chunk.
        int dataLines = 0;
        while (dataLines < 2)
        {
            string line = await reader.ReadLineAsync() ?? throw new Xunit.Sdk.XunitException("the stream ended early");
            dataLines += line.StartsWith("data: ", StringComparison.Ordinal) ? 1 : 0;
        }

        response.Dispose();

        var clock = Stopwatch.StartNew();
        while (await MetricAsync(client, "paligemma_requests_total{endpoint=\"chat_completions\",status=\"499\"}") < 1)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the abandoned request was never counted as 499");
            await Task.Delay(50);
        }

        // The handler gives up at once; the generation stops at its next token and then counts its tokens.
        while (await MetricAsync(client, "paligemma_requests_running") > 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the abandoned generation kept running");
            await Task.Delay(20);
        }

        output.WriteLine($"stopped {clock.ElapsedMilliseconds} ms after the disconnect");
        double generated = await MetricAsync(client, "paligemma_generated_tokens_total") - tokensBefore;
        output.WriteLine($"abandoned after the first event: {generated} of {Asked} tokens generated");
        Assert.InRange(generated, 1, Asked - 1);
    }

    [Fact]
    public async Task Past_the_queue_cap_a_request_gets_429_with_Retry_After_and_a_disconnect_frees_the_place()
    {
        await using var busy = await PaliGemmaServer.StartAsync(served.Model, new ServerOptions { Port = 0, MaxQueuedRequests = 0, MaxTokensCap = 4000 });
        using var client = ServedFixture.NewClient(busy.BaseAddress);
        string longBody = ChatBody(PictureParts(1, "caption en"), ", \"stream\": true, \"max_tokens\": 4000");
        var running = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(longBody, Encoding.UTF8, "application/json") }, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await running.Content.ReadAsStreamAsync());
        await reader.ReadLineAsync();

        string shortBody = ChatBody(PictureParts(1, "caption en"), ", \"max_tokens\": 2");
        using (var refused = await client.PostAsync("v1/chat/completions", new StringContent(shortBody, Encoding.UTF8, "application/json")))
        {
            string message = await ServerRefusalTests.AssertOpenAIErrorAsync(refused, 429);
            output.WriteLine(message);
            Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter?.Delta);
        }

        running.Dispose();
        var clock = Stopwatch.StartNew();
        HttpStatusCode status;
        do
        {
            using var retry = await client.PostAsync("v1/chat/completions", new StringContent(shortBody, Encoding.UTF8, "application/json"));
            status = retry.StatusCode;
            if (status != HttpStatusCode.OK)
            {
                await Task.Delay(100);
            }
        }
        while (status != HttpStatusCode.OK && clock.Elapsed < TimeSpan.FromSeconds(30));

        output.WriteLine($"served again {clock.ElapsedMilliseconds} ms after the disconnect");
        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task The_native_endpoint_answers_with_the_object_run_json_prints()
    {
        string image = GoldenData.ImagePath("chelsea");
        var run = CliProcess.Run("paligemma", "run", "--model", served.Files.TextModelPath, "--mmproj", served.Files.MmprojPath, "--exact",
            "--image-file-path", image, "--prompt", "detect cat", "--max-tokens-to-generate", "8", "--json");
        Assert.True(run.ExitCode == 0, run.StandardError);
        using var expected = JsonDocument.Parse(run.StandardOutput);

        using var client = served.Client();
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(await File.ReadAllBytesAsync(image)), "image", "chelsea.png" },
            { new StringContent("detect cat"), "prompt" },
            { new StringContent("8"), "max_tokens" },
        };
        using var multipart = await client.PostAsync("v1/paligemma/generate", form);
        Assert.Equal(HttpStatusCode.OK, multipart.StatusCode);
        using var answer = JsonDocument.Parse(await multipart.Content.ReadAsStringAsync());

        string json = JsonSerializer.Serialize(new { image = Convert.ToBase64String(await File.ReadAllBytesAsync(image)), prompt = "detect cat", max_tokens = 8 });
        using var fromJson = await client.PostAsync("v1/paligemma/generate", new StringContent(json, Encoding.UTF8, "application/json"));
        using var answer2 = JsonDocument.Parse(await fromJson.Content.ReadAsStringAsync());

        foreach (var served in new[] { answer.RootElement, answer2.RootElement })
        {
            // Same keys as run's object (peak_rss_bytes is the process's, so the server leaves it out), same tokens.
            Assert.Equal(Keys(expected.RootElement), Keys(served));
            var timings = Keys(expected.RootElement.GetProperty("timings"));
            timings.Remove("peak_rss_bytes");
            Assert.Equal(timings, Keys(served.GetProperty("timings")));
            foreach (string key in new[] { "text", "tokens", "prompt_tokens", "objects", "stop_reason" })
            {
                Assert.Equal(expected.RootElement.GetProperty(key).GetRawText(), served.GetProperty(key).GetRawText());
            }
        }
    }

    [Fact]
    public async Task The_native_stream_sends_token_events_then_the_result()
    {
        using var client = served.Client();
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(await File.ReadAllBytesAsync(GoldenData.ImagePath("shapes224"))), "image", "shapes.png" },
            { new StringContent("caption en"), "prompt" },
            { new StringContent("5"), "max_tokens" },
            { new StringContent("true"), "stream" },
        };
        using var response = await client.PostAsync("v1/paligemma/generate", form);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);

        Assert.Equal(5, events.Count(e => e.StartsWith("event: token\n", StringComparison.Ordinal)));
        Assert.StartsWith("event: result\n", events[^1], StringComparison.Ordinal);
        using var result = JsonDocument.Parse(events[^1].Split('\n')[1]["data: ".Length..]);
        Assert.Equal(5, result.RootElement.GetProperty("tokens").GetArrayLength());
    }

    [Fact]
    public async Task Metrics_count_requests_by_status_and_expose_queue_tokens_and_latency()
    {
        using var client = served.Client();
        double ok = await MetricAsync(client, "paligemma_requests_total{endpoint=\"chat_completions\",status=\"200\"}");
        double bad = await MetricAsync(client, "paligemma_requests_total{endpoint=\"chat_completions\",status=\"400\"}");
        double tokens = await MetricAsync(client, "paligemma_generated_tokens_total");

        (await client.PostAsync("v1/chat/completions", new StringContent(ChatBody(PictureParts(1, "caption en"), ", \"max_tokens\": 3"), Encoding.UTF8, "application/json"))).Dispose();
        (await client.PostAsync("v1/chat/completions", new StringContent(ChatBody(PictureParts(0, "caption en")), Encoding.UTF8, "application/json"))).Dispose();

        Assert.Equal(ok + 1, await MetricAsync(client, "paligemma_requests_total{endpoint=\"chat_completions\",status=\"200\"}"));
        Assert.Equal(bad + 1, await MetricAsync(client, "paligemma_requests_total{endpoint=\"chat_completions\",status=\"400\"}"));
        Assert.Equal(tokens + 3, await MetricAsync(client, "paligemma_generated_tokens_total"));
        Assert.Equal(0, await MetricAsync(client, "paligemma_queue_length"));
        Assert.True(await MetricAsync(client, "paligemma_request_duration_seconds_count{endpoint=\"chat_completions\"}") >= 1);
        Assert.True(await MetricAsync(client, "paligemma_decode_tokens_per_second_count") >= 1);
    }

    [Fact]
    public async Task The_server_gives_freed_native_memory_back_once_after_being_idle_for_the_set_time()
    {
        const string Releases = "paligemma_native_memory_releases_total";
        var idle = served.Options.IdleMemoryRelease!.Value;
        using var client = served.Client();
        // This class's earlier tests may have left an idle spell running; other classes have servers of their own.
        await Task.Delay(idle * 1.5);
        double before = await MetricAsync(client, Releases);

        var clock = Stopwatch.StartNew();
        (await client.PostAsync("v1/chat/completions", new StringContent(ChatBody(PictureParts(1, "caption en"), ", \"max_tokens\": 3"), Encoding.UTF8, "application/json"))).EnsureSuccessStatusCode();
        var answered = clock.Elapsed;
        Assert.Equal(before, await MetricAsync(client, Releases));

        while (await MetricAsync(client, Releases) < before + 1)
        {
            Assert.True(clock.Elapsed < answered + idle + TimeSpan.FromSeconds(10), "the idle server never gave its freed memory back");
            await Task.Delay(50);
        }

        output.WriteLine($"released {(clock.Elapsed - answered).TotalMilliseconds:F0} ms after the answer (idle time {idle.TotalMilliseconds} ms)");
        Assert.True(clock.Elapsed - answered >= idle - TimeSpan.FromMilliseconds(100), "released before the server had been idle long enough");

        // One release per idle spell: staying idle releases nothing more.
        await Task.Delay(idle * 3);
        Assert.Equal(before + 1, await MetricAsync(client, Releases));
    }

    private static SortedSet<string> Keys(JsonElement element) => new(element.EnumerateObject().Select(p => p.Name), StringComparer.Ordinal);

    /// <summary>One sample of /metrics (0 when the series does not exist yet).</summary>
    internal static async Task<double> MetricAsync(HttpClient client, string series)
    {
        string text = await client.GetStringAsync("metrics");
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(series.Length + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}
