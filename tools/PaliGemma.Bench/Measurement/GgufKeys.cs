using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Bench.Measurement;

/// <summary>What the benchmark reads from GGUF headers (no native code).</summary>
internal static class GgufKeys
{
    public static long ImageSize(string mmproj) => GgufFile.Open(mmproj).GetInteger("clip.vision.image_size") ?? 224;

    /// <summary>Bytes a decode step reads: every text weight (the tied token_embd is the output matrix too).</summary>
    public static long WeightBytesPerToken(string textModel) => GgufFile.Open(textModel).Tensors.Sum(t => t.ByteCount);
}
