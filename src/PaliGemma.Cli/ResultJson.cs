using System.Text.Json;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Cli;

/// <summary>The fields of one answer as <c>run --json</c> prints them; <c>batch</c> writes the same ones per line.</summary>
internal static class ResultJson
{
    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void WriteFields(Utf8JsonWriter writer, GenerationResult result, IReadOnlyList<DetectedObject> objects, PaliGemmaModel model)
    {
        writer.WriteString("text", result.Text);
        writer.WriteStartArray("tokens");
        foreach (int token in result.Tokens)
        {
            writer.WriteNumberValue(token);
        }

        writer.WriteEndArray();
        writer.WriteNumber("prompt_tokens", result.PromptTokens);
        writer.WriteStartArray("objects");
        foreach (var found in objects)
        {
            writer.WriteStartObject();
            writer.WriteString("label", found.Label);
            writer.WriteStartArray("box");
            foreach (int coordinate in new[] { found.Box.X1, found.Box.Y1, found.Box.X2, found.Box.Y2 })
            {
                writer.WriteNumberValue(coordinate);
            }

            writer.WriteEndArray();
            writer.WriteBoolean("valid", found.IsValid);
            if (found.SegmentCodes is { } codes)
            {
                writer.WriteStartArray("seg");
                foreach (int code in codes)
                {
                    writer.WriteNumberValue(code);
                }

                writer.WriteEndArray();
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteString("stop_reason", result.StopReason switch
        {
            StopReason.EndOfSequence => "eos",
            StopReason.MaxTokens => "max_tokens",
            _ => "cancelled",
        });
        writer.WriteStartObject("timings");
        writer.WriteNumber("load_ms", Math.Round(model.LoadTime.TotalMilliseconds, 1));
        writer.WriteNumber("image_encode_ms", Math.Round(result.Timings.ImageEncodeMs, 1));
        writer.WriteNumber("prefill_ms", Math.Round(result.Timings.PrefillMs, 1));
        writer.WriteNumber("decode_tokens_per_s", Math.Round(result.Timings.DecodeTokensPerSecond, 2));
        if (ProcessMemory.PeakResidentBytes() is { } peak)
        {
            writer.WriteNumber("peak_rss_bytes", peak);
        }

        writer.WriteEndObject();
        writer.WriteBoolean("memory_mapped", model.MemoryMapped);
    }
}
