using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace PaliGemma.Bench.Generation;

/// <summary>JSON files as Hugging Face writes them: two-space indent, UTF-8 unescaped, a final newline.</summary>
internal static class HubJson
{
    private static readonly JsonWriterOptions Options = new()
    {
        Indented = true,
        IndentSize = 2,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void Write(string path, Action<Utf8JsonWriter> body) => AtomicFile.Write(path, stream =>
    {
        using (var writer = new Utf8JsonWriter(stream, Options))
        {
            body(writer);
        }

        stream.WriteByte((byte)'\n');
    });

    /// <summary>A float as Python prints it (50.0, not 50), so configs read like the published ones.</summary>
    public static void WritePythonFloat(this Utf8JsonWriter writer, string name, double value)
    {
        writer.WritePropertyName(name);
        writer.WriteRawValue(value == Math.Floor(value) && Math.Abs(value) < 1e16
            ? value.ToString("F1", CultureInfo.InvariantCulture)
            : value.ToString("R", CultureInfo.InvariantCulture));
    }

    public static void WriteStringArray(this Utf8JsonWriter writer, string name, params string[] values)
    {
        writer.WriteStartArray(name);
        foreach (string value in values)
        {
            writer.WriteStringValue(value);
        }

        writer.WriteEndArray();
    }

    public static void WriteNumberArray(this Utf8JsonWriter writer, string name, params double[] values)
    {
        writer.WriteStartArray(name);
        foreach (double value in values)
        {
            writer.WriteNumberValue(value);
        }

        writer.WriteEndArray();
    }
}
