using System.Diagnostics;
using System.Text;
using LLama;
using LLama.Sampling;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// One request's decode: the prefix in one non-causal batch, then tokens sampled and decoded one at a
/// time until end of sequence, the token budget or cancellation. Runs with the model to itself.
/// </summary>
internal static class TokenGenerator
{
    public static GenerationResult Run(LLamaWeights weights, PrefixLmDecoder decoder, float[] prefix, int prefixLength, double imageEncodeMs, PreparedImage image, GenerationOptions options, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        decoder.DecodePrefix(prefix, prefixLength);
        double prefillMs = clock.Elapsed.TotalMilliseconds;

        using var sampler = CreateSampler(options);
        var decoded = new StreamingTokenDecoder(Encoding.UTF8, weights) { DecodeSpecialTokens = true };
        var tokens = new List<int>();
        var text = new StringBuilder();
        var stop = StopReason.MaxTokens;
        clock.Restart();
        int decodedTokens = 0;
        while (tokens.Count < options.MaxNewTokens)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                stop = StopReason.Cancelled;
                break;
            }

            // Sample also accepts the token into the chain: accepting it again would count it twice
            // for any stateful sampler (penalties, grammars).
            var token = sampler.Sample(decoder.Handle, decoder.LastLogitsIndex);
            if (!options.IgnoreEndOfSequence && weights.Vocab.EOS is { } eos && token == eos)
            {
                stop = StopReason.EndOfSequence;
                break;
            }

            tokens.Add((int)token);
            decoded.Add(token);
            string piece = decoded.Read();
            text.Append(piece);
            onToken?.Invoke(new GeneratedToken((int)token, piece));
            if (tokens.Count < options.MaxNewTokens)
            {
                decoder.DecodeToken((int)token);
                decodedTokens++;
            }
        }

        var timings = new GenerationTimings(imageEncodeMs, prefillMs, clock.Elapsed.TotalMilliseconds, decodedTokens);
        return new GenerationResult(text.ToString(), tokens, prefixLength, stop, timings, image);
    }

    private static ISamplingPipeline CreateSampler(GenerationOptions options)
    {
        if (options.IsGreedy)
        {
            return new GreedySamplingPipeline();
        }

        return new SeedOrderSamplingPipeline(options.Temperature, options.TopP, options.TopK, options.Seed ?? (uint)Random.Shared.Next());
    }
}
