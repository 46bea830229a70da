using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace PaliGemma.Server;

/// <summary>Writes a text/event-stream response, flushing each event so the client sees tokens as they come.</summary>
internal sealed class ServerSentEvents(HttpResponse response)
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        // Proxies such as nginx would otherwise hold the events back until the buffer fills.
        response.Headers["X-Accel-Buffering"] = "no";
        response.HttpContext.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        return response.StartAsync(cancellationToken);
    }

    public Task WriteAsync(object data, CancellationToken cancellationToken, string? eventName = null) =>
        WriteRawAsync(JsonSerializer.Serialize(data, ServerJson.Options), cancellationToken, eventName);

    public async Task WriteRawAsync(string json, CancellationToken cancellationToken, string? eventName = null)
    {
        var text = new StringBuilder();
        if (eventName is not null)
        {
            text.Append("event: ").Append(eventName).Append('\n');
        }

        // JSON from the serializer has no raw newline; one data line per event.
        text.Append("data: ").Append(json).Append("\n\n");
        await response.WriteAsync(text.ToString(), cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }

    public async Task WriteDoneAsync(CancellationToken cancellationToken)
    {
        await response.WriteAsync("data: [DONE]\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}

/// <summary>A generation failed after its stream had started; the error was sent as the last event.</summary>
internal sealed class StreamFailedException(Exception inner) : Exception("the stream failed after it had started", inner);

/// <summary>Reads the whole body, within the size cap, before parsing it.</summary>
internal static class BufferedBody
{
    /// <summary>
    /// The body's bytes, in a buffer of their own: the parser reads them where they are (parsing a stream would copy
    /// them again, into a buffer from the shared pool that keeps it, a megabyte for a picture of 320 KB).
    /// </summary>
    public static async Task<ReadOnlyMemory<byte>> ReadAsync(HttpContext http)
    {
        // Sized from Content-Length only within the body cap: Kestrel refuses a larger one when it is read, not before.
        long cap = http.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize ?? 0;
        var copy = new MemoryStream(http.Request.ContentLength is { } length && length <= cap ? (int)length : 0);
        await http.Request.Body.CopyToAsync(copy, http.RequestAborted);
        return copy.GetBuffer().AsMemory(0, (int)copy.Length);
    }
}
