using System.Diagnostics;
using LLama;

namespace PaliGemma.Gguf.Inference;

/// <summary>One answer of a group decoded together: its whole prefix as rows, and how to generate.</summary>
internal sealed record SequenceRequest(float[] Prefix, int PrefixLength, double ImageEncodeMs, PreparedImage Image, GenerationOptions Options);

/// <summary>
/// Several answers decoded together in one context: the prefixes in non-causal batches (several per batch up to
/// <see cref="PrefillRows"/> rows, each bidirectional within itself only), then one causal batch
/// per step holding the next token of every answer still going. Each answer samples exactly as it would alone
/// (its own sampler, its own logits row), so the tokens are those of one-at-a-time decoding.
/// </summary>
internal static class MultiSequenceGenerator
{
    /// <summary>
    /// Rows one prefill batch holds at most, unless one prefix alone is longer. The compute buffer grows with the
    /// batch, and on a CPU a larger prefill batch is no faster per row: several prefixes share a batch only to
    /// the point where that costs nothing.
    /// </summary>
    public const int PrefillRows = 1024;

    /// <summary>The batch size a group needs: its longest prefix, or more prefixes up to <see cref="PrefillRows"/>, and a row per sequence.</summary>
    public static int BatchSize(IReadOnlyList<int> prefixLengths) =>
        Math.Max(Math.Max(prefixLengths.Max(), Math.Min(prefixLengths.Sum(), PrefillRows)), prefixLengths.Count);

    /// <summary>The sequences, in order, packed into prefill batches of at most <paramref name="capacity"/> rows.</summary>
    private static List<List<int>> PrefillChunks(IReadOnlyList<SequenceRequest> requests, int capacity)
    {
        var chunks = new List<List<int>> { new() };
        int rows = 0;
        for (int s = 0; s < requests.Count; s++)
        {
            if (rows + requests[s].PrefixLength > capacity && chunks[^1].Count > 0)
            {
                chunks.Add([]);
                rows = 0;
            }

            chunks[^1].Add(s);
            rows += requests[s].PrefixLength;
        }

        return chunks;
    }

    public static GenerationResult[] Run(LLamaWeights weights, MultiSequenceDecoder decoder, IReadOnlyList<SequenceRequest> requests, CancellationToken cancellationToken)
    {
        int count = requests.Count;
        var answers = requests.Select(r => new AnswerInProgress(weights, r.Options, null, r.PrefixLength, r.ImageEncodeMs, r.Image)).ToArray();
        try
        {
            // Each prefill batch overwrites the logits of the one before: an answer's first token is sampled
            // right after its own prefix's batch.
            var next = new int?[count];
            var clock = Stopwatch.StartNew();
            foreach (var chunk in PrefillChunks(requests, decoder.BatchCapacity))
            {
                int[] rows = decoder.DecodePrefixes([.. chunk.Select(s => (s, requests[s].Prefix, requests[s].PrefixLength))]);
                for (int i = 0; i < chunk.Count; i++)
                {
                    next[chunk[i]] = answers[chunk[i]].Next(decoder.Handle, rows[i], cancellationToken);
                }
            }

            double prefillMs = clock.Elapsed.TotalMilliseconds;
            var positions = requests.Select(r => r.PrefixLength).ToArray();
            var decodeMs = new double[count];
            var step = new List<(int Sequence, int Token, int Position)>(count);
            clock.Restart();
            while (true)
            {
                step.Clear();
                for (int s = 0; s < count; s++)
                {
                    if (next[s] is { } token)
                    {
                        step.Add((s, token, positions[s]++));
                    }
                }

                if (step.Count == 0)
                {
                    break;
                }

                decoder.DecodeTokens(step);
                double now = clock.Elapsed.TotalMilliseconds;
                for (int row = 0; row < step.Count; row++)
                {
                    int s = step[row].Sequence;
                    next[s] = answers[s].Next(decoder.Handle, row, cancellationToken);
                    if (next[s] is null)
                    {
                        decodeMs[s] = now;
                    }
                }
            }

            return [.. answers.Select((a, s) => a.Result(prefillMs, decodeMs[s]))];
        }
        finally
        {
            foreach (var answer in answers)
            {
                answer.Dispose();
            }
        }
    }

}
