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
    private readonly Func<bool> _graphScalesEmbeddings;

    /// <param name="graphScalesEmbeddings">The probe's answer, asked for only when a prefix is assembled (the text weights are loaded then).</param>
    public PrefixAssembler(LoadedWeights weights, string textModelPath, Func<bool> graphScalesEmbeddings)
    {
        _weights = weights;
        _textModelPath = textModelPath;
        _graphScalesEmbeddings = graphScalesEmbeddings;
    }

    public int EmbeddingSize => _weights.EmbeddingSize;

    public int ImageTokens => _weights.ImageTokens;

    /// <summary>Token ids of the prefix's text part: BOS, the prompt, then "\n" as its own piece (big_vision).</summary>
    public int[] TokenizePrompt(string prompt)
    {
        return _weights.WithVocabulary(vocabulary =>
        {
            var bos = vocabulary.Vocab.BOS ?? throw new PaliGemmaException($"{_textModelPath}: the vocabulary has no BOS token");
            var ids = new List<int> { (int)bos };
            ids.AddRange(vocabulary.Tokenize(prompt, false, true, Encoding.UTF8).Select(t => (int)t));
            ids.AddRange(vocabulary.Tokenize("\n", false, true, Encoding.UTF8).Select(t => (int)t));
            return ids.ToArray();
        });
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

    /// <summary>
    /// The whole prefix: the projector's image rows and the text rows, each scaled the way the graph needs (image
    /// rows must arrive as W x + b, text rows as the embedding times sqrt(n_embd): docs/DESIGN.md §6).
    /// </summary>
    public float[] Assemble(ReadOnlySpan<float> projectedImageRows, int[] textTokens)
    {
        int dimension = EmbeddingSize;
        if (projectedImageRows.Length != ImageTokens * dimension)
        {
            throw new InvalidOperationException($"{projectedImageRows.Length} image values, expected {ImageTokens} x {dimension}");
        }

        bool graphScales = _graphScalesEmbeddings();
        float sqrtEmbedding = MathF.Sqrt(dimension);
        float imageRowScale = graphScales ? 1f / sqrtEmbedding : 1f;
        float textRowScale = graphScales ? 1f : sqrtEmbedding;
        var rows = new float[(ImageTokens + textTokens.Length) * dimension];
        for (int i = 0; i < projectedImageRows.Length; i++)
        {
            rows[i] = projectedImageRows[i] * imageRowScale;
        }

        for (int t = 0; t < textTokens.Length; t++)
        {
            var row = rows.AsSpan((ImageTokens + t) * dimension, dimension);
            _weights.TokenEmbeddings.ReadRow(textTokens[t], row);
            if (textRowScale != 1f)
            {
                for (int i = 0; i < row.Length; i++)
                {
                    row[i] *= textRowScale;
                }
            }
        }

        return rows;
    }
}
