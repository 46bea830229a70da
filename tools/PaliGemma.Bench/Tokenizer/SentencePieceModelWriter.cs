using Google.Protobuf;
using PaliGemma.Gguf.Tokenizer;

namespace PaliGemma.Bench.Tokenizer;

/// <summary>
/// Writes <c>tokenizer.model</c>: a SentencePiece <c>ModelProto</c> encoded with the protobuf wire
/// writer, holding the fields a Gemma model sets (BPE, byte fallback, digits split, no dummy prefix).
/// </summary>
internal static class SentencePieceModelWriter
{
    // ModelProto
    private const int PiecesField = 1;
    private const int TrainerSpecField = 2;
    private const int NormalizerSpecField = 3;

    // ModelProto.SentencePiece
    private const int PieceTextField = 1;
    private const int PieceScoreField = 2;
    private const int PieceTypeField = 3;

    // TrainerSpec
    private const int ModelTypeField = 3;
    private const int VocabSizeField = 4;
    private const int SplitDigitsField = 25;
    private const int ByteFallbackField = 35;
    private const int UnkIdField = 40;
    private const int BosIdField = 41;
    private const int EosIdField = 42;
    private const int PadIdField = 43;
    private const int BpeModelType = 2;

    // NormalizerSpec
    private const int NormalizerNameField = 1;
    private const int AddDummyPrefixField = 3;
    private const int RemoveExtraWhitespacesField = 4;

    public static void Write(Stream stream, SyntheticVocabulary vocabulary)
    {
        using var output = new CodedOutputStream(stream, leaveOpen: true);
        foreach (var piece in vocabulary.Pieces)
        {
            output.WriteTag(PiecesField, WireFormat.WireType.LengthDelimited);
            output.WriteLength(PieceSize(piece));
            WritePiece(output, piece);
        }

        WriteMessage(output, TrainerSpecField, spec =>
        {
            spec.WriteTag(ModelTypeField, WireFormat.WireType.Varint);
            spec.WriteEnum(BpeModelType);
            spec.WriteTag(VocabSizeField, WireFormat.WireType.Varint);
            spec.WriteInt32(vocabulary.Pieces.Count);
            spec.WriteTag(SplitDigitsField, WireFormat.WireType.Varint);
            spec.WriteBool(true);
            spec.WriteTag(ByteFallbackField, WireFormat.WireType.Varint);
            spec.WriteBool(true);
            spec.WriteTag(UnkIdField, WireFormat.WireType.Varint);
            spec.WriteInt32(SyntheticVocabulary.UnknownId);
            spec.WriteTag(BosIdField, WireFormat.WireType.Varint);
            spec.WriteInt32(SyntheticVocabulary.BosId);
            spec.WriteTag(EosIdField, WireFormat.WireType.Varint);
            spec.WriteInt32(SyntheticVocabulary.EosId);
            spec.WriteTag(PadIdField, WireFormat.WireType.Varint);
            spec.WriteInt32(SyntheticVocabulary.PadId);
        });

        // add_dummy_prefix defaults to true in the proto: Gemma sets it false explicitly.
        WriteMessage(output, NormalizerSpecField, spec =>
        {
            spec.WriteTag(NormalizerNameField, WireFormat.WireType.LengthDelimited);
            spec.WriteString("identity");
            spec.WriteTag(AddDummyPrefixField, WireFormat.WireType.Varint);
            spec.WriteBool(false);
            spec.WriteTag(RemoveExtraWhitespacesField, WireFormat.WireType.Varint);
            spec.WriteBool(false);
        });
    }

    /// <summary>SentencePiece leaves the type out for normal pieces (the proto default).</summary>
    private static void WritePiece(CodedOutputStream output, Piece piece)
    {
        output.WriteTag(PieceTextField, WireFormat.WireType.LengthDelimited);
        output.WriteString(piece.Text);
        output.WriteTag(PieceScoreField, WireFormat.WireType.Fixed32);
        output.WriteFloat(piece.Score);
        if (piece.Type != TokenType.Normal)
        {
            output.WriteTag(PieceTypeField, WireFormat.WireType.Varint);
            output.WriteEnum((int)piece.Type);
        }
    }

    private static int PieceSize(Piece piece) =>
        CodedOutputStream.ComputeTagSize(PieceTextField) + CodedOutputStream.ComputeStringSize(piece.Text)
        + CodedOutputStream.ComputeTagSize(PieceScoreField) + CodedOutputStream.ComputeFloatSize(piece.Score)
        + (piece.Type == TokenType.Normal ? 0 : CodedOutputStream.ComputeTagSize(PieceTypeField) + CodedOutputStream.ComputeEnumSize((int)piece.Type));

    /// <summary>A small embedded message, encoded first to learn its length.</summary>
    private static void WriteMessage(CodedOutputStream output, int field, Action<CodedOutputStream> write)
    {
        using var buffer = new MemoryStream();
        using (var message = new CodedOutputStream(buffer, leaveOpen: true))
        {
            write(message);
        }

        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(buffer.ToArray()));
    }
}
