using System.Diagnostics;
using System.Text;
using LLama;
using LLama.Native;
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

        using var answer = new AnswerInProgress(weights, options, onToken, prefixLength, imageEncodeMs, image);
        clock.Restart();
        while (answer.Next(decoder.Handle, decoder.LastLogitsIndex, cancellationToken) is { } token)
        {
            decoder.DecodeToken(token);
        }

        return answer.Result(prefillMs, clock.Elapsed.TotalMilliseconds);
    }
}

/// <summary>
/// The sampling side of one answer: its sampler, the tokens and text so far, and why it stopped. The same
/// steps whether the answer is decoded alone or together with others in one llama.cpp batch.
/// </summary>
internal sealed class AnswerInProgress : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly GenerationOptions _options;
    private readonly Action<GeneratedToken>? _onToken;
    private readonly int _prefixLength;
    private readonly double _imageEncodeMs;
    private readonly PreparedImage _image;
    private readonly ISamplingPipeline _sampler;
    private readonly StreamingTokenDecoder _decoded;
    private readonly List<int> _tokens = [];
    private readonly StringBuilder _text = new();
    private StopReason _stop = StopReason.MaxTokens;
    private int _decodedTokens;

    public AnswerInProgress(LLamaWeights weights, GenerationOptions options, Action<GeneratedToken>? onToken, int prefixLength, double imageEncodeMs, PreparedImage image)
    {
        _weights = weights;
        _options = options;
        _onToken = onToken;
        _prefixLength = prefixLength;
        _imageEncodeMs = imageEncodeMs;
        _image = image;
        _sampler = CreateSampler(options);
        _decoded = new StreamingTokenDecoder(Encoding.UTF8, weights) { DecodeSpecialTokens = true };
    }

    public bool Finished { get; private set; }

    /// <summary>
    /// Samples the next token from the logits at <paramref name="logitsIndex"/> of the last decode; returns the
    /// token to decode next, or null when the answer is complete (end of sequence, budget, cancellation).
    /// </summary>
    public int? Next(SafeLLamaContextHandle context, int logitsIndex, CancellationToken cancellationToken)
    {
        if (Finished || _tokens.Count >= _options.MaxNewTokens)
        {
            Finished = true;
            return null;
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return Stop(StopReason.Cancelled);
        }

        // Sample also accepts the token into the chain: accepting it again would count it twice
        // for any stateful sampler (penalties, grammars).
        var token = _sampler.Sample(context, logitsIndex);
        if (!_options.IgnoreEndOfSequence && _weights.Vocab.EOS is { } eos && token == eos)
        {
            return Stop(StopReason.EndOfSequence);
        }

        _tokens.Add((int)token);
        _decoded.Add(token);
        string piece = _decoded.Read();
        _text.Append(piece);
        _onToken?.Invoke(new GeneratedToken((int)token, piece));
        if (_tokens.Count >= _options.MaxNewTokens)
        {
            return Stop(StopReason.MaxTokens);
        }

        _decodedTokens++;
        return (int)token;
    }

    public GenerationResult Result(double prefillMs, double decodeMs) =>
        new(_text.ToString(), _tokens, _prefixLength, _stop, new GenerationTimings(_imageEncodeMs, prefillMs, decodeMs, _decodedTokens), _image);

    public void Dispose() => _sampler.Dispose();

    private int? Stop(StopReason reason)
    {
        _stop = reason;
        Finished = true;
        return null;
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
