using System.Text.Json;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Gguf.Tasks;

/// <summary>
/// The JSON object of <c>paligemma run --json</c>, also the answer of the server's native endpoint, so
/// that a script can switch between the two without changing its parser.
/// </summary>
public static class RunResultJson
{
    /// <summary>
    /// Writes the object: text, tokens, prompt_tokens, objects (label, box, valid, seg codes and mask when there are
    /// some), stop_reason, timings, memory_mapped.
    /// </summary>
    /// <param name="peakResidentBytes">The process's peak resident memory, when known (left out when null).</param>
    public static void Write(Utf8JsonWriter writer, GenerationResult result, IReadOnlyList<DetectedObject> objects, PaliGemmaModel model, long? peakResidentBytes)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        WriteFields(writer, result, objects, model, peakResidentBytes);
        writer.WriteEndObject();
    }

    /// <summary>
    /// The same fields without the enclosing braces, for a caller that adds its own around them (<c>batch</c>'s
    /// lines start with the picture and the prompt).
    /// </summary>
    public static void WriteFields(Utf8JsonWriter writer, GenerationResult result, IReadOnlyList<DetectedObject> objects, PaliGemmaModel model, long? peakResidentBytes)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(objects);
        ArgumentNullException.ThrowIfNull(model);

        writer.WriteString("text", result.Text);
        writer.WriteStartArray("tokens");
        foreach (int token in result.Tokens)
        {
            writer.WriteNumberValue(token);
        }

        writer.WriteEndArray();
        writer.WriteNumber("prompt_tokens", result.PromptTokens);
        WriteObjects(writer, objects);
        writer.WriteString("stop_reason", StopReasonName(result.StopReason));
        writer.WriteStartObject("timings");
        writer.WriteNumber("load_ms", Math.Round(model.LoadTime.TotalMilliseconds, 1));
        writer.WriteNumber("image_encode_ms", Math.Round(result.Timings.ImageEncodeMs, 1));
        writer.WriteNumber("prefill_ms", Math.Round(result.Timings.PrefillMs, 1));
        writer.WriteNumber("decode_tokens_per_s", Math.Round(result.Timings.DecodeTokensPerSecond, 2));
        if (peakResidentBytes is { } peak)
        {
            writer.WriteNumber("peak_rss_bytes", peak);
        }

        writer.WriteEndObject();
        writer.WriteBoolean("memory_mapped", model.MemoryMapped);
    }

    /// <summary>"eos", "max_tokens" or "cancelled".</summary>
    public static string StopReasonName(StopReason reason) => reason switch
    {
        StopReason.EndOfSequence => "eos",
        StopReason.MaxTokens => "max_tokens",
        _ => "cancelled",
    };

    /// <summary>
    /// The <c>"objects"</c> array: label, box, valid, seg codes when the answer had some, and for a decoded mask
    /// <c>"mask"</c> (COCO's compressed RLE, as pycocotools' <c>mask.encode</c> returns it, plus the box's 8-bit
    /// soft mask for drawing) and <c>"mask_pixels"</c>.
    /// </summary>
    public static void WriteObjects(Utf8JsonWriter writer, IReadOnlyList<DetectedObject> objects)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(objects);
        writer.WriteStartArray("objects");
        foreach (var found in objects)
        {
            WriteObject(writer, found);
        }

        writer.WriteEndArray();
    }

    private static void WriteObject(Utf8JsonWriter writer, DetectedObject found)
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

        if (found.Mask is { } mask)
        {
            // COCO's run-length form for tools, and the box's 8-bit soft mask for drawing (Box.Height rows of Box.Width bytes).
            writer.WriteStartObject("mask");
            writer.WriteStartArray("size");
            writer.WriteNumberValue(mask.PictureHeight);
            writer.WriteNumberValue(mask.PictureWidth);
            writer.WriteEndArray();
            writer.WriteString("counts", mask.ToCocoRle());
            writer.WriteBase64String("box_mask", mask.BoxMask);
            writer.WriteEndObject();
            writer.WriteNumber("mask_pixels", mask.PixelCount);
        }

        writer.WriteEndObject();
    }
}
