namespace PaliGemma.Gguf.Inference;

/// <summary>One generated token and the text it completes (empty while a UTF-8 character is split across tokens).</summary>
public readonly record struct GeneratedToken(int Id, string Text);

/// <summary>Why generation stopped.</summary>
public enum StopReason
{
    EndOfSequence,
    MaxTokens,
    Cancelled,
}

/// <summary>Where the time of one request went.</summary>
public sealed record GenerationTimings(double ImageEncodeMs, double PrefillMs, double DecodeMs, int DecodedTokens)
{
    /// <summary>Tokens per second of the decode loop (the first token comes from the prefill).</summary>
    public double DecodeTokensPerSecond => DecodeMs > 0 ? DecodedTokens / (DecodeMs / 1000.0) : 0;
}

/// <summary>The result of one (image, prompt) request.</summary>
/// <param name="Text">The generated text, without the prompt.</param>
/// <param name="Tokens">Ids of the generated tokens (the end-of-sequence token excluded).</param>
/// <param name="PromptTokens">Length of the prefix: image tokens, BOS, prompt and "\n".</param>
public sealed record GenerationResult(string Text, IReadOnlyList<int> Tokens, int PromptTokens, StopReason StopReason, GenerationTimings Timings, PreparedImage Image);

/// <summary>An image and a prompt.</summary>
/// <param name="ImagePath">Path of the picture (PNG, JPEG, GIF, BMP, TGA, WebP...).</param>
/// <param name="Prompt">The task prompt, for example "caption en" or "detect cat".</param>
public sealed record GenerationRequest(string ImagePath, string Prompt);
