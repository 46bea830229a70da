using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Server;

/// <summary>
/// POST /v1/paligemma/generate: a picture and a prompt (multipart form, or JSON with the picture in
/// base64), answered with the object <c>paligemma run --json</c> prints, detected objects included.
/// With <c>stream</c>, server-sent <c>token</c> events come first and the object is the <c>result</c> event.
/// Sampling options are run's: greedy unless <c>do_sample</c>, then temperature 0.8 and top-p 0.9.
/// </summary>
internal sealed class NativeGenerateEndpoint(ServerContext server)
{
    public const string Name = "generate";

    public async Task HandleAsync(HttpContext http)
    {
        var clock = Stopwatch.StartNew();
        var aborted = http.RequestAborted;
        var request = await ReadAsync(http);

        using var ticket = server.Queue.Enter();
        var image = await Task.Run(() => PictureReader.Prepare(request.Picture, server.Model, server.Options.MaxImagePixels, "image"), aborted);
        server.CheckFits(request.Prompt, request.Generation.MaxNewTokens);

        if (request.Stream)
        {
            var tokens = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            var generation = server.Queue.GenerateAsync(image, request.Prompt, request.Generation, token => tokens.Writer.TryWrite(token), aborted);
            _ = generation.ContinueWith(_ => tokens.Writer.TryComplete(), TaskScheduler.Default);
            var events = new ServerSentEvents(http.Response);
            await events.StartAsync(aborted);
            await foreach (var token in tokens.Reader.ReadAllAsync(CancellationToken.None))
            {
                await events.WriteAsync(new { id = token.Id, text = token.Text }, aborted, "token");
            }

            GenerationResult streamed;
            try
            {
                streamed = await generation;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                await events.WriteAsync(new { error = new { message = server.Describe(e), type = ApiException.ServerError } }, aborted, "error");
                throw new StreamFailedException(e);
            }

            aborted.ThrowIfCancellationRequested();
            await events.WriteRawAsync(ResultJson(streamed, image), aborted, "result");
        }
        else
        {
            var result = await server.Queue.GenerateAsync(image, request.Prompt, request.Generation, null, aborted);
            aborted.ThrowIfCancellationRequested();
            http.Response.ContentType = "application/json; charset=utf-8";
            await http.Response.WriteAsync(ResultJson(result, image), aborted);
        }

        server.Metrics.Latency.WithLabels(Name).Observe(clock.Elapsed.TotalSeconds);
    }

    private string ResultJson(GenerationResult result, PreparedImage image)
    {
        var objects = DetectionParser.Parse(result.Text, image.OriginalWidth, image.OriginalHeight);
        if (server.Options.MaskDecoder is { } masks)
        {
            objects = masks.AddMasks(objects, image.OriginalWidth, image.OriginalHeight);
        }

        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, ServerJson.WriterOptions))
        {
            // The server's peak memory is not one request's: left out (see /metrics for the process).
            RunResultJson.Write(writer, result, objects, server.Model, peakResidentBytes: null);
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private sealed record Request(byte[] Picture, string Prompt, GenerationOptions Generation, bool Stream);

    private async Task<Request> ReadAsync(HttpContext http)
    {
        if (http.Request.HasFormContentType)
        {
            var form = await http.Request.ReadFormAsync(http.RequestAborted);
            var file = form.Files.GetFile("image") ?? throw ApiException.BadRequest("no picture: send the picture as the form's 'image' file", "image");
            using var picture = new MemoryStream();
            await file.CopyToAsync(picture, http.RequestAborted);
            string? Field(string name) => form.TryGetValue(name, out var value) ? value.ToString() : null;
            var fields = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (key, value) in form)
            {
                fields[key] = value.ToString();
            }

            string prompt = Field("prompt") ?? throw ApiException.BadRequest("the form needs a 'prompt' field", "prompt");
            return new Request(picture.ToArray(), prompt, Options(name => fields.TryGetValue(name, out var v) ? v : null), ParseBool(Field("stream"), "stream") ?? false);
        }

        if (http.Request.ContentType is { } type && !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            throw new ApiException(StatusCodes.Status415UnsupportedMediaType, "send multipart/form-data (image file + prompt) or application/json ({\"image\": base64, \"prompt\": ...})");
        }

        using var document = JsonFields.Parse(await BufferedBody.ReadAsync(http));
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadRequest("the body must be a JSON object");
        }

        string image = JsonFields.String(root, "image") ?? throw ApiException.BadRequest("no picture: 'image' must hold the picture's bytes in base64", "image");
        string prompt2 = JsonFields.String(root, "prompt") ?? throw ApiException.BadRequest("'prompt' is required", "prompt");
        var options = Options(name => JsonFields.IsAbsent(root, name, out var value) ? null : value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText());
        return new Request(PictureReader.FromBase64OrDataUrl(image, "image"), prompt2, options, JsonFields.Bool(root, "stream") ?? false);
    }

    /// <summary>run's options, from form fields or JSON values read as text.</summary>
    private GenerationOptions Options(Func<string, string?> field)
    {
        var defaults = new GenerationOptions();
        int maxTokens = (int?)ParseInt(field("max_tokens"), "max_tokens", 1, server.Options.MaxTokensCap) ?? Math.Min(server.Options.DefaultMaxTokens, server.Options.MaxTokensCap);
        long? seed = ParseInt(field("seed"), "seed", 0, uint.MaxValue);
        return new GenerationOptions
        {
            MaxNewTokens = maxTokens,
            DoSample = ParseBool(field("do_sample"), "do_sample") ?? false,
            Temperature = ParseFloat(field("temperature"), "temperature", 0, 100) ?? defaults.Temperature,
            TopP = ParseFloat(field("top_p"), "top_p", 0, 1) ?? defaults.TopP,
            TopK = (int?)ParseInt(field("top_k"), "top_k", 0, int.MaxValue) ?? 0,
            Seed = (uint?)seed,
        };
    }

    private static long? ParseInt(string? text, string name, long min, long max)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long value) && value >= min && value <= max
            ? value
            : throw ApiException.BadRequest($"{name} must be an integer from {min} to {max}", name);
    }

    private static float? ParseFloat(string? text, string name, float min, float max)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        return float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) && value >= min && value <= max
            ? value
            : throw ApiException.BadRequest($"{name} must be a number from {min} to {max}", name);
    }

    private static bool? ParseBool(string? text, string name) => text?.ToLowerInvariant() switch
    {
        null or "" => null,
        "true" or "1" or "on" => true,
        "false" or "0" or "off" => false,
        _ => throw ApiException.BadRequest($"{name} must be true or false", name),
    };
}
