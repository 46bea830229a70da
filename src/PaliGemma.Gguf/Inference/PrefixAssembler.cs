using System.Text;
using LLama.Native;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Builds PaliGemma's prefix as embedding rows (docs/DESIGN.md §5): the vision tower's rows for the
/// picture, then BOS, the prompt and "\n" looked up in the text model's embedding table, each scaled
/// the way the loaded graph needs (the embedding-scale probe decides).
/// </summary>
internal sealed class PrefixAssembler
{
    private readonly LoadedWeights _weights;
    private readonly string _textModelPath;
    private readonly float _imageRowScale;
    private readonly float _textRowScale;

    public PrefixAssembler(LoadedWeights weights, string textModelPath, bool graphScalesEmbeddings)
    {
        _weights = weights;
        _textModelPath = textModelPath;
        float sqrtEmbedding = MathF.Sqrt(EmbeddingSize);
        _imageRowScale = graphScalesEmbeddings ? 1f / sqrtEmbedding : 1f;
        _textRowScale = graphScalesEmbeddings ? 1f : sqrtEmbedding;
    }

    public int EmbeddingSize => _weights.Text.EmbeddingSize;

    public int ImageTokens => _weights.ImageTokens;

    /// <summary>Token ids of the prefix's text part: BOS, the prompt, then "\n" as its own piece (big_vision).</summary>
    public int[] TokenizePrompt(string prompt)
    {
        var bos = _weights.Text.Vocab.BOS ?? throw new PaliGemmaException($"{_textModelPath}: the vocabulary has no BOS token");
        var ids = new List<int> { (int)bos };
        ids.AddRange(_weights.Text.Tokenize(prompt, false, true, Encoding.UTF8).Select(t => (int)t));
        ids.AddRange(_weights.Text.Tokenize("\n", false, true, Encoding.UTF8).Select(t => (int)t));
        return ids.ToArray();
    }

    /// <summary>The projector's output W x + b for the picture (ImageTokens x EmbeddingSize), before any scaling.</summary>
    public float[] EncodeImage(PreparedImage image)
    {
        using var bitmap = SafeMtmdEmbed.FromRgbBytes((uint)image.Size, (uint)image.Size, image.Rgb)
            ?? throw new PaliGemmaException("mtmd could not take the image");
        int status = _weights.Vision.Tokenize(ModelLoader.MediaMarker, false, true, [bitmap], out var chunks);
        if (status != 0 || chunks is null)
        {
            throw new PaliGemmaException($"mtmd could not tokenize the image (status {status})");
        }

        using (chunks)
        {
            var chunk = chunks.Enumerate().FirstOrDefault(c => c.Type == SafeMtmdInputChunk.SafeMtmdInputChunkType.Image)
                ?? throw new PaliGemmaException("mtmd produced no image chunk");
            if ((int)chunk.NTokens != ImageTokens)
            {
                throw new PaliGemmaException($"mtmd made {chunk.NTokens} image tokens, expected {ImageTokens}");
            }

            return MtmdNative.EncodeImage(_weights.Vision.NativeHandle, chunk, ImageTokens, EmbeddingSize);
        }
    }

    /// <summary>The image's rows scaled for the graph: the part of the prefix every prompt on that picture shares.</summary>
    public float[] ScaleImageRows(float[] projected)
    {
        var rows = new float[projected.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            rows[i] = projected[i] * _imageRowScale;
        }

        return rows;
    }

    /// <summary>The whole prefix: the scaled image rows, then the text rows scaled for the graph.</summary>
    public float[] Assemble(ReadOnlySpan<float> scaledImageRows, int[] textTokens)
    {
        int dimension = EmbeddingSize;
        if (scaledImageRows.Length != ImageTokens * dimension)
        {
            throw new InvalidOperationException($"{scaledImageRows.Length} image values, expected {ImageTokens} x {dimension}");
        }

        var rows = new float[(ImageTokens + textTokens.Length) * dimension];
        scaledImageRows.CopyTo(rows);
        for (int t = 0; t < textTokens.Length; t++)
        {
            var row = rows.AsSpan((ImageTokens + t) * dimension, dimension);
            _weights.TokenEmbeddings.ReadRow(textTokens[t], row);
            if (_textRowScale != 1f)
            {
                for (int i = 0; i < row.Length; i++)
                {
                    row[i] *= _textRowScale;
                }
            }
        }

        return rows;
    }
}
