using System.Text.Json;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Server;

/// <summary>
/// An OpenAI chat completion request reduced to what PaliGemma takes. PaliGemma has no chat template:
/// the prompt is the one user message's text, verbatim, with exactly one picture. Whatever would be
/// silently dropped or changed (earlier turns, a system message, a second picture, tools, stop strings)
/// is refused with a 400 that says so, rather than answered as if it had been used.
/// </summary>
internal sealed record ChatCompletionRequest(string Prompt, byte[] Picture, GenerationOptions Generation, bool Stream, bool IncludeUsage)
{
    // Fields that change what OpenAI would answer and that this server cannot honour.
    private static readonly string[] Unsupported = ["tools", "functions", "tool_choice", "function_call", "stop", "logit_bias", "logprobs", "top_logprobs", "audio", "prediction"];

    public static ChatCompletionRequest Parse(JsonElement root, ServerOptions options)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadRequest("the body must be a JSON object");
        }

        foreach (string name in Unsupported)
        {
            if (!JsonFields.IsAbsent(root, name, out var value) && value.ValueKind is not JsonValueKind.False)
            {
                throw ApiException.BadRequest($"{name} is not supported by this server (PaliGemma answers one prompt about one picture)", name);
            }
        }

        if (JsonFields.Int(root, "n", 1, int.MaxValue) is > 1)
        {
            throw ApiException.BadRequest("n must be 1: one answer per request", "n");
        }

        if (root.TryGetProperty("response_format", out var format) && format.ValueKind == JsonValueKind.Object
            && format.TryGetProperty("type", out var formatType) && formatType.GetString() != "text")
        {
            throw ApiException.BadRequest("response_format other than text is not supported", "response_format");
        }

        foreach (string penalty in new[] { "presence_penalty", "frequency_penalty" })
        {
            if (JsonFields.Number(root, penalty, -2, 2) is { } value && value != 0)
            {
                throw ApiException.BadRequest($"{penalty} is not supported (only 0)", penalty);
            }
        }

        var (prompt, picture) = ReadMessages(root);

        // max_completion_tokens is the current name (the official clients send it); max_tokens the older one.
        int? maxTokens = JsonFields.Int(root, "max_completion_tokens", 1, int.MaxValue) ?? JsonFields.Int(root, "max_tokens", 1, int.MaxValue);
        if (maxTokens > options.MaxTokensCap)
        {
            throw ApiException.BadRequest($"max_tokens {maxTokens} is above this server's cap of {options.MaxTokensCap}", "max_tokens");
        }

        float? temperature = JsonFields.Number(root, "temperature", 0, 2);
        float? topP = JsonFields.Number(root, "top_p", 0, 1);
        long? seed = JsonFields.Long(root, "seed", long.MinValue, long.MaxValue);
        if (seed is < 0 or > uint.MaxValue)
        {
            throw ApiException.BadRequest($"seed must be from 0 to {uint.MaxValue}", "seed");
        }

        // Greedy unless a temperature above 0 is asked for: the answer `paligemma run` gives by default,
        // and the one PaliGemma's task prompts were tuned for.
        var generation = new GenerationOptions
        {
            MaxNewTokens = maxTokens ?? Math.Min(options.DefaultMaxTokens, options.MaxTokensCap),
            DoSample = temperature > 0,
            Temperature = temperature ?? 1f,
            TopP = topP ?? 1f,
            Seed = (uint?)seed,
        };

        bool stream = JsonFields.Bool(root, "stream") ?? false;
        bool includeUsage = false;
        if (stream && !JsonFields.IsAbsent(root, "stream_options", out var streamOptions))
        {
            includeUsage = JsonFields.Bool(streamOptions, "include_usage") ?? false;
        }

        return new ChatCompletionRequest(prompt, picture, generation, stream, includeUsage);
    }

    private static (string Prompt, byte[] Picture) ReadMessages(JsonElement root)
    {
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            throw ApiException.BadRequest("messages must be a non-empty array", "messages");
        }

        int count = messages.GetArrayLength();
        var last = messages[count - 1];
        string? role = last.ValueKind == JsonValueKind.Object ? JsonFields.String(last, "role") : null;
        if (role != "user")
        {
            throw ApiException.BadRequest("the last message must have role \"user\"", "messages");
        }

        if (count > 1)
        {
            throw ApiException.BadRequest($"PaliGemma has no chat template: send exactly one user message (this request has {count} messages; earlier turns and system messages cannot be given to the model)", "messages");
        }

        if (!last.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.String)
        {
            throw ApiException.BadRequest("no picture: the user message's content must be an array with one image_url part (a data: URL) and the prompt as a text part", "messages");
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadRequest("the user message's content must be an array of text and image_url parts", "messages");
        }

        string? prompt = null;
        string? url = null;
        int pictures = 0;
        foreach (var part in content.EnumerateArray())
        {
            string? type = part.ValueKind == JsonValueKind.Object ? JsonFields.String(part, "type") : null;
            switch (type)
            {
                case "text":
                    if (prompt is not null)
                    {
                        throw ApiException.BadRequest("send the prompt as one text part (PaliGemma takes it verbatim; several parts would have to be joined somehow)", "messages");
                    }

                    prompt = JsonFields.String(part, "text") ?? throw ApiException.BadRequest("a text part needs its text", "messages");
                    break;
                case "image_url":
                    pictures++;
                    url = ReadImageUrl(part);
                    break;
                default:
                    throw ApiException.BadRequest($"unsupported content part type '{type ?? "(none)"}': only text and image_url", "messages");
            }
        }

        if (pictures == 0)
        {
            throw ApiException.BadRequest("no picture: add one image_url part (a data: URL) to the user message", "messages");
        }

        if (pictures > 1)
        {
            throw ApiException.BadRequest($"{pictures} pictures: PaliGemma takes exactly one picture per request", "messages");
        }

        return (prompt ?? "", PictureReader.FromDataUrl(url!, "messages"));
    }

    private static string ReadImageUrl(JsonElement part)
    {
        if (!part.TryGetProperty("image_url", out var imageUrl))
        {
            throw ApiException.BadRequest("an image_url part needs its image_url", "messages");
        }

        string? url = imageUrl.ValueKind switch
        {
            JsonValueKind.String => imageUrl.GetString(),
            JsonValueKind.Object => JsonFields.String(imageUrl, "url"),
            _ => null,
        };
        return url ?? throw ApiException.BadRequest("image_url needs a url", "messages");
    }
}
