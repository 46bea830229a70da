using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Server;

/// <summary>POST /v1/chat/completions: OpenAI's chat completion, whole or streamed as server-sent events.</summary>
internal sealed class ChatCompletionsEndpoint(ServerContext server)
{
    public const string Name = "chat_completions";

    public async Task HandleAsync(HttpContext http)
    {
        var clock = Stopwatch.StartNew();
        var aborted = http.RequestAborted;
        ChatCompletionRequest request;
        using (var document = JsonFields.Parse(await BufferedBody.ReadAsync(http)))
        {
            request = ChatCompletionRequest.Parse(document.RootElement, server.Options);
        }

        using var ticket = server.Queue.Enter();
        var image = await Task.Run(() => PictureReader.Prepare(request.Picture, server.Model, server.Options.MaxImagePixels, "messages"), aborted);
        server.CheckFits(request.Prompt, request.Generation.MaxNewTokens);

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (request.Stream)
        {
            await StreamAsync(http, request, image, id, created, aborted);
        }
        else
        {
            var result = await server.Queue.GenerateAsync(image, request.Prompt, request.Generation, null, aborted);
            aborted.ThrowIfCancellationRequested();
            var answer = new
            {
                id,
                @object = "chat.completion",
                created,
                model = server.ModelName,
                choices = new[]
                {
                    new { index = 0, message = new { role = "assistant", content = result.Text }, finish_reason = FinishReason(result.StopReason), logprobs = (object?)null },
                },
                usage = Usage(result),
                system_fingerprint = (string?)null,
            };
            http.Response.ContentType = "application/json; charset=utf-8";
            await http.Response.WriteAsync(JsonSerializer.Serialize(answer, ServerJson.Options), aborted);
        }

        server.Metrics.Latency.WithLabels(Name).Observe(clock.Elapsed.TotalSeconds);
    }

    private async Task StreamAsync(HttpContext http, ChatCompletionRequest request, PreparedImage image, string id, long created, CancellationToken aborted)
    {
        var tokens = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var generation = server.Queue.GenerateAsync(image, request.Prompt, request.Generation, token => tokens.Writer.TryWrite(token), aborted);
        _ = generation.ContinueWith(t => tokens.Writer.TryComplete(), TaskScheduler.Default);

        var events = new ServerSentEvents(http.Response);
        await events.StartAsync(aborted);
        object Chunk(object delta, string? finish) => new
        {
            id,
            @object = "chat.completion.chunk",
            created,
            model = server.ModelName,
            choices = new[] { new { index = 0, delta, finish_reason = finish, logprobs = (object?)null } },
        };

        await events.WriteAsync(Chunk(new { role = "assistant", content = "" }, null), aborted);
        await foreach (var token in tokens.Reader.ReadAllAsync(CancellationToken.None))
        {
            if (token.Text.Length > 0)
            {
                await events.WriteAsync(Chunk(new { content = token.Text }, null), aborted);
            }
        }

        GenerationResult result;
        try
        {
            result = await generation;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The status line has gone: the error becomes the stream's last event.
            await events.WriteAsync(new { error = new { message = server.Describe(e), type = ApiException.ServerError } }, aborted);
            await events.WriteDoneAsync(aborted);
            throw new StreamFailedException(e);
        }

        aborted.ThrowIfCancellationRequested();
        await events.WriteAsync(Chunk(new { }, FinishReason(result.StopReason)), aborted);
        if (request.IncludeUsage)
        {
            await events.WriteAsync(new { id, @object = "chat.completion.chunk", created, model = server.ModelName, choices = Array.Empty<object>(), usage = Usage(result) }, aborted);
        }

        await events.WriteDoneAsync(aborted);
    }

    private static object Usage(GenerationResult result) => new
    {
        prompt_tokens = result.PromptTokens,
        completion_tokens = result.Tokens.Count,
        total_tokens = result.PromptTokens + result.Tokens.Count,
    };

    private static string FinishReason(StopReason reason) => reason == StopReason.MaxTokens ? "length" : "stop";
}
