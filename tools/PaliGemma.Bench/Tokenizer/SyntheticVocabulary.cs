using PaliGemma.Gguf.Tokenizer;

namespace PaliGemma.Bench.Tokenizer;

/// <summary>A SentencePiece piece: its text, merge score and type.</summary>
internal sealed record Piece(string Text, float Score, TokenType Type);

/// <summary>
/// A vocabulary laid out like PaliGemma's (Gemma's 256000 pieces, then 1024 <c>&lt;locNNNN&gt;</c> and
/// 128 <c>&lt;segNNN&gt;</c>, with <c>&lt;image&gt;</c> added on top by the Hugging Face tokenizer) whose
/// ordinary pieces are made up. Same size and same special ids as the real one, so conversion and
/// inference cost what they cost with the real tokenizer.
/// </summary>
internal sealed class SyntheticVocabulary
{
    public const int PadId = 0;
    public const int EosId = 1;
    public const int BosId = 2;
    public const int UnknownId = 3;
    public const string ImageToken = "<image>";

    /// <summary>Gemma's SentencePiece vocabulary size; PaliGemma's location and segmentation tokens follow.</summary>
    public const int GemmaPieceCount = 256000;

    public const int LocationTokenCount = 1024;
    public const int SegmentationTokenCount = 128;

    /// <summary>Where Gemma's 256 byte-fallback pieces start.</summary>
    private const int FirstByteId = 217;

    private const char Space = '\u2581';

    private static readonly string[] HtmlTags =
    [
        "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td", "h1", "h2", "h3", "h4",
        "h5", "h6", "blockquote", "ul", "ol", "li", "p", "b", "i", "u", "code", "pre",
    ];

    private SyntheticVocabulary(IReadOnlyList<Piece> pieces) => Pieces = pieces;

    public IReadOnlyList<Piece> Pieces { get; }

    /// <summary><c>&lt;image&gt;</c> comes right after the SentencePiece pieces: 257152 for PaliGemma.</summary>
    public int ImageTokenId => Pieces.Count;

    public static SyntheticVocabulary Build()
    {
        var pieces = new List<Piece>(GemmaPieceCount + LocationTokenCount + SegmentationTokenCount);
        void Add(string text, TokenType type, float score = 0f) => pieces.Add(new Piece(text, score, type));

        Add("<pad>", TokenType.Control);
        Add("<eos>", TokenType.Control);
        Add("<bos>", TokenType.Control);
        Add("<unk>", TokenType.Unknown);
        Add("<mask>", TokenType.UserDefined);
        Add("[multimodal]", TokenType.UserDefined);
        for (int i = 0; i < 100; i++)
        {
            Add($"<unused{i}>", TokenType.UserDefined);
        }

        Add("<start_of_turn>", TokenType.UserDefined);
        Add("<end_of_turn>", TokenType.UserDefined);
        AddUserDefinedFillers(pieces, FirstByteId);
        for (int b = 0; b < 256; b++)
        {
            Add($"<0x{b:X2}>", TokenType.Byte);
        }

        AddNormalPieces(pieces, GemmaPieceCount);
        for (int i = 0; i < LocationTokenCount; i++)
        {
            Add($"<loc{i:D4}>", TokenType.UserDefined);
        }

        for (int i = 0; i < SegmentationTokenCount; i++)
        {
            Add($"<seg{i:D3}>", TokenType.UserDefined);
        }

        var duplicate = pieces.GroupBy(p => p.Text, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new InvalidOperationException($"piece '{duplicate.Key}' is generated twice");
        }

        return new SyntheticVocabulary(pieces);
    }

    /// <summary>Gemma's whitespace runs and HTML tags: user-defined, so tokenized whole.</summary>
    private static void AddUserDefinedFillers(List<Piece> pieces, int end)
    {
        for (int n = 1; n <= 31; n++)
        {
            pieces.Add(new Piece(new string('\n', n), 0f, TokenType.UserDefined));
        }

        for (int n = 2; n <= 32; n++)
        {
            pieces.Add(new Piece(new string(Space, n), 0f, TokenType.UserDefined));
        }

        foreach (string tag in HtmlTags.SelectMany(t => new[] { $"<{t}>", $"</{t}>" }))
        {
            if (pieces.Count == end)
            {
                break;
            }

            pieces.Add(new Piece(tag, 0f, TokenType.UserDefined));
        }

        if (pieces.Count != end)
        {
            throw new InvalidOperationException($"user-defined fillers end at {pieces.Count}, not {end}");
        }
    }

    /// <summary>
    /// Ordinary pieces scored -0, -1, -2, ... like a trained BPE model: the word-start marker,
    /// digits, punctuation and capitals, then every lowercase string by length, each with and
    /// without the word-start marker. Shorter strings come first, so every piece's prefix is also
    /// a piece and any text tokenizes by merges.
    /// </summary>
    private static void AddNormalPieces(List<Piece> pieces, int end)
    {
        int first = pieces.Count;
        void Add(string text) => pieces.Add(new Piece(text, -(float)(pieces.Count - first), TokenType.Normal));

        Add(Space.ToString());
        foreach (char c in "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        {
            Add(c.ToString());
        }

        for (long i = 0; pieces.Count < end; i++)
        {
            string letters = Letters(i);
            Add(Space + letters);
            if (pieces.Count < end)
            {
                Add(letters);
            }
        }
    }

    /// <summary>Bijective base 26: 0 = a, 25 = z, 26 = aa, ...</summary>
    private static string Letters(long n)
    {
        var chars = new List<char>();
        for (n++; n > 0; n = (n - 1) / 26)
        {
            chars.Add((char)('a' + ((n - 1) % 26)));
        }

        chars.Reverse();
        return new string(chars.ToArray());
    }
}
