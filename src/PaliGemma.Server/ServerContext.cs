using Microsoft.AspNetCore.Http;
using PaliGemma.Gguf;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Server;

/// <summary>What the endpoints share: the model, its queue, the options and the metrics.</summary>
internal sealed class ServerContext : IDisposable
{
    public ServerContext(PaliGemmaModel model, ServerOptions options)
    {
        Model = model;
        Options = options;
        ModelName = options.ModelName ?? Path.GetFileNameWithoutExtension(model.TextModelPath);
        Queue = new GenerationQueue(model, options.MaxQueuedRequests, options.IdleMemoryRelease, Metrics);
    }

    public PaliGemmaModel Model { get; }

    public ServerOptions Options { get; }

    public ServerMetrics Metrics { get; } = new();

    public string ModelName { get; }

    public GenerationQueue Queue { get; }

    public void Dispose() => Queue.Dispose();

    /// <summary>Refuses, before queueing, a request whose prefix and tokens cannot fit the model's context.</summary>
    public void CheckFits(string prompt, int maxNewTokens)
    {
        int prefix = Model.ImageTokens + Model.TokenizePrompt(prompt).Length;
        if (prefix + maxNewTokens > Model.ContextLength)
        {
            throw ApiException.BadRequest($"the prompt needs {prefix} tokens ({Model.ImageTokens} for the picture) plus max_tokens {maxNewTokens}, more than the model's context of {Model.ContextLength}", "max_tokens");
        }
    }

    /// <summary>What a client may read about a failure: the library's one-line message, or nothing for the unexpected.</summary>
    public string Describe(Exception e) => e is PaliGemmaException ? e.Message : "internal error";

    /// <summary>
    /// Runs a generation endpoint: counts it by status, turns refusals into OpenAI's error shape, never
    /// sends a stack trace, and says nothing to a client that went away (its generation was cancelled).
    /// </summary>
    public async Task GuardAsync(HttpContext http, string endpoint, Func<HttpContext, Task> handler)
    {
        int status;
        try
        {
            await handler(http);
            status = http.Response.StatusCode;
        }
        catch (Exception) when (http.RequestAborted.IsCancellationRequested)
        {
            status = 499;
        }
        catch (StreamFailedException e)
        {
            Options.ErrorLog?.Invoke($"{endpoint}: {e.InnerException?.Message}");
            status = StatusCodes.Status500InternalServerError;
        }
        catch (Exception e) when (!http.Response.HasStarted)
        {
            (status, string message, string type, string? param) = e switch
            {
                ApiException api => (api.Status, api.Message, api.Type, api.Param),
                BadHttpRequestException bad => (bad.StatusCode, bad.StatusCode == StatusCodes.Status413PayloadTooLarge
                    ? $"the request body is larger than this server's limit of {Options.MaxRequestBodyBytes} bytes"
                    : bad.Message, ApiException.TypeFor(bad.StatusCode), null),
                PaliGemmaException library => (StatusCodes.Status400BadRequest, library.Message, ApiException.InvalidRequest, null),
                _ => (StatusCodes.Status500InternalServerError, "internal error", ApiException.ServerError, null),
            };
            if (status >= 500)
            {
                Options.ErrorLog?.Invoke($"{endpoint}: {e}");
            }

            if (status == StatusCodes.Status429TooManyRequests)
            {
                http.Response.Headers.RetryAfter = "1";
            }

            await ApiException.WriteAsync(http.Response, status, message, type, param);
        }
        catch (Exception e)
        {
            // Mid-stream: the connection is all that is left to close.
            Options.ErrorLog?.Invoke($"{endpoint}: {e}");
            status = StatusCodes.Status500InternalServerError;
            http.Abort();
        }

        Metrics.Requests.WithLabels(endpoint, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
    }
}
