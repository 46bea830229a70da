namespace PaliGemma.Gguf.Inference;

/// <summary>Which implementation of the same bicubic resampler to reproduce bit for bit; they differ only in fixed-point rounding.</summary>
public enum BicubicVariant
{
    /// <summary>
    /// Pillow's <c>Image.resize(BICUBIC)</c>, 22 fraction bits: what Hugging Face's slow (PIL) image processors do,
    /// the default in transformers 4.x.
    /// </summary>
    Pillow,

    /// <summary>
    /// torchvision's uint8 antialiased bicubic resize, Pillow's algorithm with int16 weights (about 15 fraction bits):
    /// what the fast image processors do, the default in transformers 5.x. Differs from Pillow by one level on a
    /// fraction of a percent of the values.
    /// </summary>
    Torchvision,
}
