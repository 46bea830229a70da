namespace PaliGemma.Bench.Generation;

/// <summary>The Gemma decoder's hyper-parameters.</summary>
/// <param name="EmbeddingRows">Rows of embed_tokens: the tokenizer's 257152 ids padded to 257216.</param>
internal sealed record TextShape(
    string ModelType,
    int HiddenSize,
    int LayerCount,
    int HeadCount,
    int KeyValueHeadCount,
    int HeadDim,
    int IntermediateSize,
    int EmbeddingRows)
{
    public bool IsGemma2 => ModelType == "gemma2";
}

/// <summary>The SigLIP tower's hyper-parameters.</summary>
internal sealed record VisionShape(int HiddenSize, int LayerCount, int HeadCount, int IntermediateSize, int PatchSize, int ImageSize)
{
    public int ImageTokens => (ImageSize / PatchSize) * (ImageSize / PatchSize);
}

/// <summary>A published checkpoint whose shapes (not weights) are reproduced.</summary>
/// <param name="TransformersVersion">The version the published config.json was saved with.</param>
internal sealed record ModelPreset(string Name, TextShape Text, VisionShape Vision, string TransformersVersion)
{
    /// <summary>SigLIP So400m/14 at 224 px: the same tower in PaliGemma 1 and 2.</summary>
    private static readonly VisionShape SigLip224 = new(HiddenSize: 1152, LayerCount: 27, HeadCount: 16, IntermediateSize: 4304, PatchSize: 14, ImageSize: 224);

    public static IReadOnlyList<ModelPreset> All { get; } =
    [
        new("paligemma-3b-pt-224", new TextShape("gemma", 2048, 18, 8, 1, 256, 16384, 257216), SigLip224, "4.42.0.dev0"),
        new("paligemma2-3b-pt-224", new TextShape("gemma2", 2304, 26, 8, 4, 256, 9216, 257216), SigLip224, "4.47.0"),
    ];

    public static ModelPreset Get(string name) =>
        All.FirstOrDefault(p => p.Name == name) ?? throw new ArgumentException($"unknown model '{name}'", nameof(name));
}
