namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Sampling parameters, mapped onto llama.cpp's sampler chain. Greedy unless <see cref="DoSample"/>,
/// as the original inference.py.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate. Default: 100.</summary>
    public int MaxNewTokens { get; init; } = 100;

    /// <summary>Sample from the distribution instead of taking the most likely token. Default: false.</summary>
    public bool DoSample { get; init; }

    /// <summary>Softmax temperature when sampling; 0 means greedy. Default: 0.8.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches this. Default: 0.9.</summary>
    public float TopP { get; init; } = 0.9f;

    /// <summary>Keep only the k most likely tokens; 0 disables. Default: 0.</summary>
    public int TopK { get; init; }

    /// <summary>Random seed for sampling: the same seed gives the same output. Default: null (random).</summary>
    public uint? Seed { get; init; }

    /// <summary>Keep generating past the end-of-sequence token, up to <see cref="MaxNewTokens"/> (benchmarks). Default: false.</summary>
    public bool IgnoreEndOfSequence { get; init; }

    /// <summary>True when the options amount to greedy decoding.</summary>
    public bool IsGreedy => !DoSample || Temperature <= 0 || TopK == 1;

    internal void Validate()
    {
        if (MaxNewTokens < 0)
        {
            throw new PaliGemmaException($"max tokens must be >= 0, not {MaxNewTokens}");
        }

        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
        {
            throw new PaliGemmaException($"temperature must be a finite number >= 0, not {Temperature}");
        }

        if (!(TopP >= 0 && TopP <= 1))
        {
            throw new PaliGemmaException($"top-p must be between 0 and 1, not {TopP}");
        }

        if (TopK < 0)
        {
            throw new PaliGemmaException($"top-k must be >= 0, not {TopK}");
        }
    }
}
