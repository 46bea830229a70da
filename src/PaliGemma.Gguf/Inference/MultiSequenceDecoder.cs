using LLama;
using LLama.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// One llama.cpp context decoding several PaliGemma answers at once, each under its own sequence id in one
/// unified KV buffer (docs/DESIGN.md §10). Prefixes go in as one embeddings batch with causal attention off,
/// tokens as one causal batch with a row per sequence. llama.cpp's attention mask
/// (<c>llama_kv_cache::set_input_kq_mask</c>) hides every cell of another sequence whether attention is causal
/// or not, so each prefix attends both ways within itself only, as when it is decoded alone.
/// </summary>
internal sealed class MultiSequenceDecoder : IDisposable
{
    private readonly LLamaContext _context;
    private readonly LLamaBatch _tokenBatch = new();

    public MultiSequenceDecoder(LLamaWeights weights, ModelOptions options, int sequences, int contextSize, int batchSize)
    {
        _context = PrefixLmDecoder.CreateContext(weights, options, contextSize, Math.Max(batchSize, sequences), sequences);
        Sequences = sequences;
        BatchCapacity = Math.Max(batchSize, sequences);
    }

    public SafeLLamaContextHandle Handle => _context.NativeHandle;

    public int Sequences { get; }

    /// <summary>Rows one decode may hold: all prefixes decoded together must fit.</summary>
    public int BatchCapacity { get; }

    /// <summary>
    /// Decodes the prefixes of sequences that hold nothing yet, all in one non-causal batch, each from position
    /// 0; returns, for each, the batch index of its last row's logits.
    /// </summary>
    public int[] DecodePrefixes(IReadOnlyList<(int Sequence, float[] Rows, int RowCount)> prefixes)
    {
        int dimension = _context.EmbeddingSize;
        int total = prefixes.Sum(p => p.RowCount);
        if (total == 0 || total > BatchCapacity || prefixes.Any(p => p.RowCount == 0 || p.Rows.Length != p.RowCount * dimension || (uint)p.Sequence >= (uint)Sequences))
        {
            throw new InvalidOperationException($"prefixes of {total} rows do not fit the batch of {BatchCapacity}, the embedding size {dimension} or the {Sequences} sequences");
        }

        var batch = new LLamaBatchEmbeddings(dimension);
        var lastRows = new int[prefixes.Count];
        int index = 0;
        for (int p = 0; p < prefixes.Count; p++)
        {
            var (sequence, rows, rowCount) = prefixes[p];
            for (int i = 0; i < rowCount; i++)
            {
                batch.Add(rows.AsSpan(i * dimension, dimension), i, (LLamaSeqId)sequence, logits: i == rowCount - 1);
                index++;
            }

            lastRows[p] = index - 1;
        }

        Handle.SetCausalAttention(false);
        try
        {
            PrefixLmDecoder.Check(_context.Decode(batch), "prefixes");
        }
        finally
        {
            Handle.SetCausalAttention(true);
        }

        return lastRows;
    }

    /// <summary>Decodes one token for each of several sequences, causally, in one batch; the token's logits are at its index in the list.</summary>
    public void DecodeTokens(IReadOnlyList<(int Sequence, int Token, int Position)> tokens)
    {
        if (tokens.Count == 0 || tokens.Count > BatchCapacity)
        {
            throw new InvalidOperationException($"{tokens.Count} tokens do not fit the batch of {BatchCapacity}");
        }

        _tokenBatch.Clear();
        foreach (var (sequence, token, position) in tokens)
        {
            _tokenBatch.Add((LLamaToken)token, position, (LLamaSeqId)sequence, true);
        }

        PrefixLmDecoder.Check(_context.Decode(_tokenBatch), "tokens");
    }

    /// <summary>Frees a sequence's cells so its id can start a new answer.</summary>
    public void Forget(int sequence) => Handle.MemorySequenceRemove((LLamaSeqId)sequence, 0, -1);

    public void Dispose() => _context.Dispose();
}
