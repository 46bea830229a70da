using LLama;
using LLama.Common;
using LLama.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// One request's llama.cpp context, decoding PaliGemma's prefix-LM (docs/DESIGN.md §5): the whole prefix
/// (image rows, BOS, prompt, "\n") as one embeddings batch with causal attention off, so every
/// prefix position sees every other, then generated tokens one by one with causal attention.
/// </summary>
internal sealed class PrefixLmDecoder : IDisposable
{
    private readonly LLamaContext _context;
    private readonly LLamaBatch _tokenBatch = new();

    public PrefixLmDecoder(LLamaWeights weights, ModelOptions options, int contextSize, int prefixLength)
    {
        _context = CreateContext(weights, options, contextSize, batchSize: Math.Max(prefixLength, 1), sequences: 1);
        PrefixCapacity = prefixLength;
    }

    public SafeLLamaContextHandle Handle => _context.NativeHandle;

    /// <summary>
    /// A context of <paramref name="contextSize"/> cells for up to <paramref name="sequences"/> sequences in one unified
    /// KV buffer, whose batch and micro-batch both hold <paramref name="batchSize"/> rows.
    /// </summary>
    internal static LLamaContext CreateContext(LLamaWeights weights, ModelOptions options, int contextSize, int batchSize, int sequences)
    {
        // llama.cpp aborts the process when a non-causal batch is larger than n_ubatch (or any batch
        // larger than n_batch): size both to hold the whole prefix. The KV buffer is unified so that one
        // micro-batch may hold several sequences' prefixes (a split per sequence would cut a prefix's
        // bidirectional attention) and each sequence may use any share of the cells.
        var parameters = new ModelParams(string.Empty)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)batchSize,
            UBatchSize = (uint)batchSize,
            SeqMax = (uint)sequences,
            KVUnified = true,
            Threads = options.Threads,
            BatchThreads = options.Threads,
            FlashAttention = options.Precision == Precision.Exact ? false : null,
            TypeK = options.Precision == Precision.Exact ? GGMLType.GGML_TYPE_F32 : null,
            TypeV = options.Precision == Precision.Exact ? GGMLType.GGML_TYPE_F32 : null,
        };
        try
        {
            return weights.CreateContext(parameters);
        }
        catch (Exception e) when (e is LLama.Exceptions.RuntimeError)
        {
            throw new PaliGemmaException($"llama.cpp could not create a context of {contextSize} tokens: {e.Message}", e);
        }
    }

    public int PrefixCapacity { get; }

    /// <summary>Next position to decode.</summary>
    public int Position { get; private set; }

    /// <summary>Batch index of the row whose logits the last decode produced.</summary>
    public int LastLogitsIndex { get; private set; }

    /// <summary>Decodes the prefix rows (row-major, rows x n_embd) non-causally; returns the last row's logits.</summary>
    public Span<float> DecodePrefix(ReadOnlySpan<float> rows, int rowCount)
    {
        int dimension = rows.Length / Math.Max(rowCount, 1);
        if (rowCount == 0 || rowCount > PrefixCapacity || rows.Length != rowCount * dimension || dimension != _context.EmbeddingSize)
        {
            throw new InvalidOperationException($"prefix of {rowCount} rows does not fit the batch of {PrefixCapacity} or the embedding size {_context.EmbeddingSize}");
        }

        var batch = new LLamaBatchEmbeddings(dimension);
        for (int i = 0; i < rowCount; i++)
        {
            batch.Add(rows.Slice(i * dimension, dimension), Position + i, LLamaSeqId.Zero, logits: i == rowCount - 1);
        }

        Handle.SetCausalAttention(false);
        try
        {
            Check(_context.Decode(batch), "prefix");
        }
        finally
        {
            Handle.SetCausalAttention(true);
        }

        Position += rowCount;
        LastLogitsIndex = rowCount - 1;
        return Handle.GetLogitsIth(LastLogitsIndex);
    }

    /// <summary>Decodes one token causally after everything so far; returns its logits.</summary>
    public Span<float> DecodeToken(int token)
    {
        if (Position >= _context.ContextSize)
        {
            throw new PaliGemmaException($"the context of {_context.ContextSize} tokens is full");
        }

        _tokenBatch.Clear();
        _tokenBatch.Add((LLamaToken)token, Position, LLamaSeqId.Zero, true);
        Check(_context.Decode(_tokenBatch), "token");
        Position++;
        LastLogitsIndex = 0;
        return Handle.GetLogitsIth(0);
    }

    /// <summary>Forgets everything decoded so far.</summary>
    public void Reset()
    {
        Handle.MemoryClear(true);
        Position = 0;
    }

    internal static void Check(DecodeResult result, string what)
    {
        if (result != DecodeResult.Ok)
        {
            throw new PaliGemmaException($"llama.cpp failed to decode the {what} ({result})");
        }
    }

    public void Dispose() => _context.Dispose();
}
