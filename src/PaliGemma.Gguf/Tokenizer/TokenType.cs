namespace PaliGemma.Gguf.Tokenizer;

/// <summary>Token types as llama.cpp's <c>tokenizer.ggml.token_type</c> stores them (SentencePiece's numbering).</summary>
public enum TokenType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}
