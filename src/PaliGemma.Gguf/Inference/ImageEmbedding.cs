namespace PaliGemma.Gguf.Inference;

/// <summary>
/// A picture run through the vision tower once: the image part of PaliGemma's prefix, reusable for
/// any number of prompts on the model that made it. Each prompt still gets its own prefill (the
/// prefix attends both ways, so the image rows' keys depend on the prompt), only the vision tower
/// is skipped.
/// </summary>
public sealed class ImageEmbedding
{
    internal ImageEmbedding(PaliGemmaModel model, PreparedImage image, float[] rows, double encodeMs)
    {
        Model = model;
        Image = image;
        Rows = rows;
        EncodeMs = encodeMs;
    }

    /// <summary>The picture as the vision tower saw it (and its original size, for box coordinates).</summary>
    public PreparedImage Image { get; }

    /// <summary>Time the vision tower and projector took for this picture.</summary>
    public double EncodeMs { get; }

    /// <summary>The model this embedding belongs to: rows from another model's projector mean nothing here.</summary>
    internal PaliGemmaModel Model { get; }

    /// <summary>ImageTokens x EmbeddingSize rows, the projector's W x + b (scaled for the graph when a prefix is assembled).</summary>
    internal float[] Rows { get; }
}
