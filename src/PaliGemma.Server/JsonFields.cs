using System.Text.Json;

namespace PaliGemma.Server;

/// <summary>Reads optional request fields with errors that name the field and say what it should be.</summary>
internal static class JsonFields
{
    public static bool IsAbsent(JsonElement parent, string name, out JsonElement value) =>
        !parent.TryGetProperty(name, out value) || value.ValueKind == JsonValueKind.Null;

    public static int? Int(JsonElement parent, string name, int min, int max)
    {
        if (IsAbsent(parent, name, out var value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long number) || number < min || number > max)
        {
            throw ApiException.BadRequest($"{name} must be an integer from {min} to {max}", name);
        }

        return (int)number;
    }

    public static long? Long(JsonElement parent, string name, long min, long max)
    {
        if (IsAbsent(parent, name, out var value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long number) || number < min || number > max)
        {
            throw ApiException.BadRequest($"{name} must be an integer from {min} to {max}", name);
        }

        return number;
    }

    public static float? Number(JsonElement parent, string name, float min, float max)
    {
        if (IsAbsent(parent, name, out var value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double number) || !(number >= min && number <= max))
        {
            throw ApiException.BadRequest($"{name} must be a number from {min} to {max}", name);
        }

        return (float)number;
    }

    public static bool? Bool(JsonElement parent, string name)
    {
        if (IsAbsent(parent, name, out var value))
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadRequest($"{name} must be true or false", name),
        };
    }

    public static string? String(JsonElement parent, string name)
    {
        if (IsAbsent(parent, name, out var value))
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw ApiException.BadRequest($"{name} must be a string", name);
    }

    public static JsonDocument Parse(ReadOnlyMemory<byte> body)
    {
        try
        {
            return JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the body is not valid JSON: {e.Message.ReplaceLineEndings(" ")}");
        }
    }
}
