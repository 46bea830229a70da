using PaliGemma.Gguf;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Server;

/// <summary>
/// Turns the bytes a client sent into the model's input with the library's checks (pixel budget read
/// from the header before decoding, truncation, format). The server never fetches a URL or opens a
/// path a client names: pictures arrive in the request.
/// </summary>
internal static class PictureReader
{
    private const string DataScheme = "data:";

    /// <summary>Reads an OpenAI <c>image_url</c>: only <c>data:[type];base64,...</c> URLs.</summary>
    public static byte[] FromDataUrl(string url, string param)
    {
        if (!url.StartsWith(DataScheme, StringComparison.OrdinalIgnoreCase))
        {
            string scheme = url.Contains(':', StringComparison.Ordinal) ? url[..url.IndexOf(':', StringComparison.Ordinal)] : "(none)";
            throw ApiException.BadRequest($"image_url must be a data: URL (data:image/png;base64,...); this server fetches nothing, and '{Truncate(scheme)}:' URLs are refused", param);
        }

        int comma = url.IndexOf(',', StringComparison.Ordinal);
        if (comma < 0)
        {
            throw ApiException.BadRequest("the data: URL has no ',' before its data", param);
        }

        string header = url[DataScheme.Length..comma];
        if (!header.EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
        {
            throw ApiException.BadRequest("the data: URL must be base64 (data:image/png;base64,...)", param);
        }

        return FromBase64(url.AsSpan(comma + 1), param);
    }

    /// <summary>Base64 (or a data: URL) of the native endpoint's JSON form.</summary>
    public static byte[] FromBase64OrDataUrl(string value, string param) =>
        value.StartsWith(DataScheme, StringComparison.OrdinalIgnoreCase) ? FromDataUrl(value, param) : FromBase64(value, param);

    public static PreparedImage Prepare(byte[] bytes, PaliGemmaModel model, long maxPixels, string param)
    {
        if (bytes.Length == 0)
        {
            throw ApiException.BadRequest("the picture is empty", param);
        }

        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            return ImagePreprocessor.Load(stream, "the picture", model.ImageSize, maxPixels, applyExifOrientation: model.Options.ApplyExifOrientation);
        }
        catch (PaliGemmaException e)
        {
            throw ApiException.BadRequest(e.Message, param);
        }
    }

    private static byte[] FromBase64(ReadOnlySpan<char> text, string param)
    {
        var buffer = new byte[(text.Length / 4 * 3) + 3];
        if (!Convert.TryFromBase64Chars(text, buffer, out int written))
        {
            throw ApiException.BadRequest("the picture is not valid base64", param);
        }

        return buffer.AsSpan(0, written).ToArray();
    }

    private static string Truncate(string text) => text.Length <= 16 ? text : text[..16] + "...";
}
