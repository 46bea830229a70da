using System.Text.Json;
using PaliGemma.Bench.Generation;
using PaliGemma.Gguf.Tokenizer;

namespace PaliGemma.Bench.Tokenizer;

/// <summary>
/// The Hugging Face tokenizer files of a PaliGemma checkpoint: <c>tokenizer.model</c> (SentencePiece),
/// <c>tokenizer.json</c> (the same vocabulary as a BPE model, plus <c>&lt;image&gt;</c> among its
/// added tokens), <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c>.
/// </summary>
internal static class TokenizerFiles
{
    public static IReadOnlyList<string> Write(string directory, SyntheticVocabulary vocabulary)
    {
        var written = new List<string>();
        string Path(string name)
        {
            string path = System.IO.Path.Combine(directory, name);
            written.Add(path);
            return path;
        }

        AtomicFile.Write(Path("tokenizer.model"), stream => SentencePieceModelWriter.Write(stream, vocabulary));
        HubJson.Write(Path("tokenizer.json"), writer => WriteTokenizerJson(writer, vocabulary));
        HubJson.Write(Path("tokenizer_config.json"), writer => WriteTokenizerConfig(writer, vocabulary));
        HubJson.Write(Path("special_tokens_map.json"), WriteSpecialTokensMap);
        return written;
    }

    /// <summary>Pieces that tokenizers matches before the model: everything but normal and byte pieces, and &lt;image&gt;.</summary>
    private static IEnumerable<(int Id, string Content, bool Special, bool Normalized)> AddedTokens(SyntheticVocabulary vocabulary)
    {
        for (int id = 0; id < vocabulary.Pieces.Count; id++)
        {
            var piece = vocabulary.Pieces[id];
            if (piece.Type is TokenType.Normal or TokenType.Byte)
            {
                continue;
            }

            bool special = piece.Type is TokenType.Control or TokenType.Unknown || piece.Text == "<mask>";
            yield return (id, piece.Text, special, Normalized: id >= SyntheticVocabulary.GemmaPieceCount);
        }

        yield return (vocabulary.ImageTokenId, SyntheticVocabulary.ImageToken, true, false);
    }

    private static void WriteTokenizerJson(Utf8JsonWriter writer, SyntheticVocabulary vocabulary)
    {
        writer.WriteStartObject();
        writer.WriteString("version", "1.0");
        writer.WriteNull("truncation");
        writer.WriteNull("padding");
        writer.WriteStartArray("added_tokens");
        foreach (var (id, content, special, normalized) in AddedTokens(vocabulary))
        {
            writer.WriteStartObject();
            writer.WriteNumber("id", id);
            writer.WriteString("content", content);
            writer.WriteBoolean("single_word", false);
            writer.WriteBoolean("lstrip", false);
            writer.WriteBoolean("rstrip", false);
            writer.WriteBoolean("normalized", normalized);
            writer.WriteBoolean("special", special);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();

        writer.WriteStartObject("normalizer");
        writer.WriteString("type", "Replace");
        writer.WriteStartObject("pattern");
        writer.WriteString("String", " ");
        writer.WriteEndObject();
        writer.WriteString("content", "\u2581");
        writer.WriteEndObject();

        writer.WriteStartObject("pre_tokenizer");
        writer.WriteString("type", "Split");
        writer.WriteStartObject("pattern");
        writer.WriteString("String", " ");
        writer.WriteEndObject();
        writer.WriteString("behavior", "MergedWithPrevious");
        writer.WriteBoolean("invert", false);
        writer.WriteEndObject();

        WritePostProcessor(writer);
        WriteDecoder(writer);
        WriteBpeModel(writer, vocabulary);
        writer.WriteEndObject();
    }

    private static void WritePostProcessor(Utf8JsonWriter writer)
    {
        void Sequence(string id, int typeId)
        {
            writer.WriteStartObject();
            writer.WriteStartObject("Sequence");
            writer.WriteString("id", id);
            writer.WriteNumber("type_id", typeId);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        writer.WriteStartObject("post_processor");
        writer.WriteString("type", "TemplateProcessing");
        writer.WriteStartArray("single");
        Sequence("A", 0);
        writer.WriteEndArray();
        writer.WriteStartArray("pair");
        Sequence("A", 0);
        Sequence("B", 1);
        writer.WriteEndArray();
        writer.WriteStartObject("special_tokens");
        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    private static void WriteDecoder(Utf8JsonWriter writer)
    {
        writer.WriteStartObject("decoder");
        writer.WriteString("type", "Sequence");
        writer.WriteStartArray("decoders");
        writer.WriteStartObject();
        writer.WriteString("type", "Replace");
        writer.WriteStartObject("pattern");
        writer.WriteString("String", "\u2581");
        writer.WriteEndObject();
        writer.WriteString("content", " ");
        writer.WriteEndObject();
        writer.WriteStartObject();
        writer.WriteString("type", "ByteFallback");
        writer.WriteEndObject();
        writer.WriteStartObject();
        writer.WriteString("type", "Fuse");
        writer.WriteEndObject();
        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    /// <summary>
    /// The vocabulary with one merge per multi-character normal piece (its prefix + its last
    /// character), ranked in id order, which is score order.
    /// </summary>
    private static void WriteBpeModel(Utf8JsonWriter writer, SyntheticVocabulary vocabulary)
    {
        writer.WriteStartObject("model");
        writer.WriteString("type", "BPE");
        writer.WriteNull("dropout");
        writer.WriteString("unk_token", "<unk>");
        writer.WriteNull("continuing_subword_prefix");
        writer.WriteNull("end_of_word_suffix");
        writer.WriteBoolean("fuse_unk", true);
        writer.WriteBoolean("byte_fallback", true);
        writer.WriteBoolean("ignore_merges", false);

        var ids = new Dictionary<string, int>(vocabulary.Pieces.Count, StringComparer.Ordinal);
        writer.WriteStartObject("vocab");
        for (int id = 0; id < vocabulary.Pieces.Count; id++)
        {
            ids[vocabulary.Pieces[id].Text] = id;
            writer.WriteNumber(vocabulary.Pieces[id].Text, id);
        }

        writer.WriteEndObject();

        writer.WriteStartArray("merges");
        foreach (var piece in vocabulary.Pieces.Where(p => p.Type == TokenType.Normal && p.Text.Length >= 2))
        {
            string left = piece.Text[..^1];
            string right = piece.Text[^1..];
            if (ids.ContainsKey(left) && ids.ContainsKey(right))
            {
                writer.WriteStartArray();
                writer.WriteStringValue(left);
                writer.WriteStringValue(right);
                writer.WriteEndArray();
            }
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    private static void WriteTokenizerConfig(Utf8JsonWriter writer, SyntheticVocabulary vocabulary)
    {
        writer.WriteStartObject();
        writer.WriteBoolean("add_bos_token", true);
        writer.WriteBoolean("add_eos_token", false);
        writer.WriteStartObject("added_tokens_decoder");
        foreach (var (id, content, special, normalized) in AddedTokens(vocabulary))
        {
            writer.WriteStartObject(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteString("content", content);
            writer.WriteBoolean("lstrip", false);
            writer.WriteBoolean("normalized", normalized);
            writer.WriteBoolean("rstrip", false);
            writer.WriteBoolean("single_word", false);
            writer.WriteBoolean("special", special);
            writer.WriteEndObject();
        }

        writer.WriteEndObject();
        writer.WriteStringArray("additional_special_tokens", SyntheticVocabulary.ImageToken);
        writer.WriteString("bos_token", "<bos>");
        writer.WriteBoolean("clean_up_tokenization_spaces", false);
        writer.WriteString("eos_token", "<eos>");
        // transformers' "no limit" sentinel, int(1e30), verbatim.
        writer.WritePropertyName("model_max_length");
        writer.WriteRawValue("1000000000000000019884624838656");
        writer.WriteString("pad_token", "<pad>");
        writer.WriteString("processor_class", "PaliGemmaProcessor");
        writer.WriteStartObject("sp_model_kwargs");
        writer.WriteEndObject();
        writer.WriteBoolean("spaces_between_special_tokens", false);
        writer.WriteString("tokenizer_class", "GemmaTokenizer");
        writer.WriteString("unk_token", "<unk>");
        writer.WriteBoolean("use_default_system_prompt", false);
        writer.WriteEndObject();
    }

    private static void WriteSpecialTokensMap(Utf8JsonWriter writer)
    {
        void Token(string? name, string content)
        {
            if (name is null)
            {
                writer.WriteStartObject();
            }
            else
            {
                writer.WriteStartObject(name);
            }

            writer.WriteString("content", content);
            writer.WriteBoolean("lstrip", false);
            writer.WriteBoolean("normalized", false);
            writer.WriteBoolean("rstrip", false);
            writer.WriteBoolean("single_word", false);
            writer.WriteEndObject();
        }

        writer.WriteStartObject();
        writer.WriteStartArray("additional_special_tokens");
        Token(null, SyntheticVocabulary.ImageToken);
        writer.WriteEndArray();
        Token("bos_token", "<bos>");
        Token("eos_token", "<eos>");
        Token("pad_token", "<pad>");
        Token("unk_token", "<unk>");
        writer.WriteEndObject();
    }
}
