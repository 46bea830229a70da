namespace PaliGemma.Gguf.Gguf;

/// <summary>Constants of the GGUF container format (version 3).</summary>
internal static class GgufFormat
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint Version = 3;
    public const uint DefaultAlignment = 32;
    public const int MaxDimensions = 4; // GGML_MAX_DIMS
    public const string AlignmentKey = "general.alignment";

    public static long AlignUp(long offset, long alignment) => (offset + alignment - 1) / alignment * alignment;
}
