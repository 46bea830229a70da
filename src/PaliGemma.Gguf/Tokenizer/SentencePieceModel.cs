using Google.Protobuf;

namespace PaliGemma.Gguf.Tokenizer;

/// <summary>
/// Reads a SentencePiece <c>tokenizer.model</c> (a <c>ModelProto</c> protobuf) with the protobuf
/// wire reader: the pieces with their scores and types, the special ids and whether a space is
/// prefixed. Only the fields llama.cpp needs are read; the rest are skipped.
/// </summary>
public static class SentencePieceModel
{
    private const long MaxFileBytes = 256L << 20;

    public static Vocabulary Load(string path)
    {
        byte[] bytes;
        try
        {
            var length = new FileInfo(path).Length;
            if (length > MaxFileBytes)
            {
                throw PaliGemmaException.InFile(path, $"{length} bytes is too large for a SentencePiece model");
            }

            bytes = File.ReadAllBytes(path);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot read: {e.Message}", e);
        }

        try
        {
            return Parse(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw PaliGemmaException.InFile(path, $"not a valid SentencePiece model: {e.Message}", e);
        }
        catch (InvalidDataException e)
        {
            throw PaliGemmaException.InFile(path, $"not a valid SentencePiece model: {e.Message}", e);
        }
    }

    private static Vocabulary Parse(byte[] bytes)
    {
        var tokens = new List<string>();
        var scores = new List<float>();
        var types = new List<TokenType>();
        int unk = 0, bos = 1, eos = 2, pad = -1;
        bool addDummyPrefix = true;

        var input = new CodedInputStream(bytes);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    var (piece, score, type) = ParsePiece(input.ReadBytes());
                    tokens.Add(piece);
                    scores.Add(score);
                    types.Add(type);
                    break;
                case 2 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    (unk, bos, eos, pad) = ParseTrainerSpec(input.ReadBytes(), unk, bos, eos, pad);
                    break;
                case 3 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    addDummyPrefix = ParseNormalizerSpec(input.ReadBytes(), addDummyPrefix);
                    break;
                default:
                    input.SkipLastField();
                    break;
            }
        }

        if (tokens.Count == 0)
        {
            throw new InvalidDataException("it holds no pieces");
        }

        foreach (var (name, id) in new[] { ("unk", unk), ("bos", bos), ("eos", eos) })
        {
            if (id < 0 || id >= tokens.Count)
            {
                throw new InvalidDataException($"{name}_id {id} is outside the {tokens.Count} pieces");
            }
        }

        return new Vocabulary(tokens, scores, types, bos, eos, unk, pad >= 0 && pad < tokens.Count ? pad : 0, addDummyPrefix);
    }

    private static (string Piece, float Score, TokenType Type) ParsePiece(ByteString message)
    {
        string piece = "";
        float score = 0;
        var type = TokenType.Normal;
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (tag)
            {
                case (1 << 3) | 2: piece = input.ReadString(); break;
                case (2 << 3) | 5: score = input.ReadFloat(); break;
                case (3 << 3) | 0:
                    int value = input.ReadEnum();
                    type = value is >= 1 and <= 6 ? (TokenType)value : throw new InvalidDataException($"piece type {value}");
                    break;
                default: input.SkipLastField(); break;
            }
        }

        return (piece, score, type);
    }

    private static (int Unk, int Bos, int Eos, int Pad) ParseTrainerSpec(ByteString message, int unk, int bos, int eos, int pad)
    {
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (tag)
            {
                case (40 << 3) | 0: unk = input.ReadInt32(); break;
                case (41 << 3) | 0: bos = input.ReadInt32(); break;
                case (42 << 3) | 0: eos = input.ReadInt32(); break;
                case (43 << 3) | 0: pad = input.ReadInt32(); break;
                default: input.SkipLastField(); break;
            }
        }

        return (unk, bos, eos, pad);
    }

    private static bool ParseNormalizerSpec(ByteString message, bool addDummyPrefix)
    {
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (tag == ((3 << 3) | 0))
            {
                addDummyPrefix = input.ReadBool();
            }
            else
            {
                input.SkipLastField();
            }
        }

        return addDummyPrefix;
    }
}
