using System.Text.Json;

namespace PaliGemma.Bench.Measurement;

/// <summary>
/// One run of the product (<c>paligemma run --json</c>) or of the bare engine: the phases it times
/// itself, and the whole process's wall time and peak RSS as GNU time measures both.
/// </summary>
internal sealed record RunTimings(double LoadMs, double ImageEncodeMs, double PrefillMs, double DecodeTokensPerSecond, double WallSeconds, long PeakRssBytes, bool? MemoryMapped)
{
    public static RunTimings From(ChildProcess.Result process)
    {
        var json = JsonDocument.Parse(process.StandardOutput.Trim().Split('\n')[^1]).RootElement;
        var timings = json.TryGetProperty("timings", out var nested) ? nested : json;
        return new RunTimings(
            timings.GetProperty("load_ms").GetDouble(),
            timings.GetProperty("image_encode_ms").GetDouble(),
            timings.GetProperty("prefill_ms").GetDouble(),
            timings.GetProperty("decode_tokens_per_s").GetDouble(),
            process.Seconds,
            process.PeakRssBytes,
            json.TryGetProperty("memory_mapped", out var mapped) ? mapped.GetBoolean() : null);
    }
}
