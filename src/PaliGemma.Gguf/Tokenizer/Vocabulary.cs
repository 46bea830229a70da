namespace PaliGemma.Gguf.Tokenizer;

/// <summary>
/// A SentencePiece-style vocabulary ready for GGUF (<c>tokenizer.ggml.model = llama</c>): pieces,
/// merge scores, token types and special ids.
/// </summary>
public sealed record Vocabulary(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<float> Scores,
    IReadOnlyList<TokenType> Types,
    int BosId,
    int EosId,
    int UnknownId,
    int PaddingId,
    bool AddSpacePrefix)
{
    public int Count => Tokens.Count;

    /// <summary>
    /// Pads the vocabulary with unused <c>[PADn]</c> entries up to <paramref name="rows"/>: llama.cpp
    /// sizes the embedding matrix from the vocabulary, and PaliGemma pads its rows (257152 -> 257216).
    /// </summary>
    public Vocabulary PadTo(int rows)
    {
        if (rows < Count)
        {
            throw new PaliGemmaException($"the tokenizer has {Count} tokens but the model's embedding has only {rows} rows");
        }

        var tokens = Tokens.ToList();
        var scores = Scores.ToList();
        var types = Types.ToList();
        for (int id = Count; id < rows; id++)
        {
            tokens.Add($"[PAD{id}]");
            scores.Add(0f);
            types.Add(TokenType.Unused);
        }

        return this with { Tokens = tokens, Scores = scores, Types = types };
    }
}
