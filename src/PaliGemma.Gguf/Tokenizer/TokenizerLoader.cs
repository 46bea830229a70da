using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Tokenizer;

/// <summary>
/// Builds the vocabulary of a Hugging Face checkpoint folder: <c>tokenizer.model</c> (SentencePiece)
/// when present, with the tokens added on top of it (<c>&lt;image&gt;</c>) from <c>tokenizer.json</c>
/// or <c>tokenizer_config.json</c>; otherwise <c>tokenizer.json</c> alone.
/// </summary>
public static class TokenizerLoader
{
    public static Vocabulary Load(string directory)
    {
        string modelPath = Path.Combine(directory, "tokenizer.model");
        string jsonPath = Path.Combine(directory, "tokenizer.json");
        string configPath = Path.Combine(directory, "tokenizer_config.json");

        Vocabulary vocabulary;
        if (File.Exists(modelPath))
        {
            vocabulary = SentencePieceModel.Load(modelPath);
        }
        else if (File.Exists(jsonPath))
        {
            vocabulary = ReadJson(jsonPath, root => FromTokenizerJson(jsonPath, root));
        }
        else
        {
            throw PaliGemmaException.InFile(directory, "no tokenizer: neither tokenizer.model nor tokenizer.json");
        }

        var added = new SortedDictionary<int, (string Content, string Path)>();
        if (File.Exists(jsonPath))
        {
            ReadJson(jsonPath, root => CollectAddedTokens(jsonPath, root, added));
        }

        if (File.Exists(configPath))
        {
            ReadJson(configPath, root => CollectAddedTokensDecoder(configPath, root, added));
        }

        return AppendAddedTokens(vocabulary, added);
    }

    /// <summary>Added tokens past the SentencePiece pieces (PaliGemma's <c>&lt;image&gt;</c>) become control tokens.</summary>
    private static Vocabulary AppendAddedTokens(Vocabulary vocabulary, SortedDictionary<int, (string Content, string Path)> added)
    {
        var beyond = added.Where(a => a.Key >= vocabulary.Count).ToList();
        if (beyond.Count == 0)
        {
            return vocabulary;
        }

        // The ids between the vocabulary and an added token become [PAD] entries. Real files leave no
        // gap (PaliGemma's <image> follows the last piece), so a gap wider than the vocabulary itself
        // is a corrupt id, which would otherwise allocate up to millions of entries from one number.
        var (last, (lastContent, lastPath)) = beyond[^1];
        if (last - vocabulary.Count - (beyond.Count - 1) > vocabulary.Count)
        {
            throw PaliGemmaException.InFile(lastPath, $"added token '{TensorNames.ForMessage(lastContent)}' has id {last}, implausibly far past the {vocabulary.Count} tokens of the vocabulary");
        }

        var tokens = vocabulary.Tokens.ToList();
        var scores = vocabulary.Scores.ToList();
        var types = vocabulary.Types.ToList();
        for (int id = vocabulary.Count; id <= last; id++)
        {
            bool isAdded = added.TryGetValue(id, out var token);
            tokens.Add(isAdded ? token.Content : $"[PAD{id}]");
            scores.Add(0f);
            types.Add(isAdded ? TokenType.Control : TokenType.Unused);
        }

        return vocabulary with { Tokens = tokens, Scores = scores, Types = types };
    }

    private static bool CollectAddedTokens(string path, JsonElement root, SortedDictionary<int, (string Content, string Path)> added)
    {
        if (root.TryGetProperty("added_tokens", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var token in list.EnumerateArray())
            {
                if (token.TryGetProperty("id", out var id) && id.TryGetInt32(out int value) && value >= 0
                    && token.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                {
                    added[value] = (content.GetString()!, path);
                }
            }
        }

        return true;
    }

    private static bool CollectAddedTokensDecoder(string path, JsonElement root, SortedDictionary<int, (string Content, string Path)> added)
    {
        if (root.TryGetProperty("added_tokens_decoder", out var map) && map.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in map.EnumerateObject())
            {
                if (int.TryParse(entry.Name, out int id) && id >= 0
                    && entry.Value.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                {
                    added.TryAdd(id, (content.GetString()!, path));
                }
            }
        }

        return true;
    }

    /// <summary>
    /// tokenizer.json holds a BPE model without SentencePiece scores. llama.cpp's SentencePiece
    /// tokenizer merges the highest-scoring pair first, so a piece made by merge number r scores -r.
    /// </summary>
    private static Vocabulary FromTokenizerJson(string path, JsonElement root)
    {
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object
            || !model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
        {
            throw PaliGemmaException.InFile(path, "no \"model.vocab\" object");
        }

        if (model.String("type") is { } type && type != "BPE")
        {
            throw PaliGemmaException.InFile(path, $"tokenizer model type '{TensorNames.ForMessage(type)}' is not supported without tokenizer.model (expected BPE)");
        }

        var byId = new SortedDictionary<int, string>();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocab.EnumerateObject())
        {
            // A JSON object may repeat a key, so a piece can be listed twice as well as an id.
            if (!entry.Value.TryGetInt32(out int id) || id < 0 || id > 16_000_000 || !byId.TryAdd(id, entry.Name) || !ids.TryAdd(entry.Name, id))
            {
                throw PaliGemmaException.InFile(path, $"vocab entry '{TensorNames.ForMessage(entry.Name)}' has an invalid or repeated id, or is repeated");
            }
        }

        if (byId.Count == 0)
        {
            throw PaliGemmaException.InFile(path, "\"model.vocab\" is empty");
        }

        // Ids without an entry become [PAD] entries; real vocabularies are dense, so more holes than
        // entries is a corrupt id, which would otherwise allocate millions of entries from one number.
        int count = byId.Keys.Last() + 1;
        if (count - byId.Count > byId.Count)
        {
            throw PaliGemmaException.InFile(path, $"vocab ids run up to {count - 1} but there are only {byId.Count} entries");
        }

        var tokens = new string[count];
        var scores = new float[count];
        var types = new TokenType[count];
        for (int id = 0; id < count; id++)
        {
            tokens[id] = byId.TryGetValue(id, out string? piece) ? piece : $"[PAD{id}]";
            types[id] = !byId.ContainsKey(id) ? TokenType.Unused
                : IsByteToken(tokens[id]) ? TokenType.Byte
                : TokenType.Normal;
        }

        if (model.TryGetProperty("merges", out var merges) && merges.ValueKind == JsonValueKind.Array)
        {
            int rank = 0;
            foreach (var merge in merges.EnumerateArray())
            {
                string? merged = merge.ValueKind switch
                {
                    JsonValueKind.String => merge.GetString()!.Replace(" ", "", StringComparison.Ordinal),
                    JsonValueKind.Array => string.Concat(merge.EnumerateArray().Select(p => p.GetString())),
                    _ => null,
                };
                rank++;
                if (merged is not null && ids.TryGetValue(merged, out int id) && scores[id] == 0)
                {
                    scores[id] = -rank;
                }
            }
        }

        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var addedTokens) && addedTokens.ValueKind == JsonValueKind.Array)
        {
            foreach (var token in addedTokens.EnumerateArray())
            {
                if (token.TryGetProperty("id", out var idElement) && idElement.TryGetInt32(out int id) && id >= 0 && id < count)
                {
                    // Special added tokens are control tokens; the others (PaliGemma's <locNNNN>, <segNNN>)
                    // are user-defined: llama.cpp matches both as whole pieces, never splitting them.
                    bool special = token.TryGetProperty("special", out var flag) && flag.ValueKind == JsonValueKind.True;
                    types[id] = special ? TokenType.Control : TokenType.UserDefined;
                    if (special)
                    {
                        specials[tokens[id]] = id;
                    }
                }
            }
        }

        int Special(string name, int fallback) => specials.TryGetValue(name, out int id) ? id : ids.TryGetValue(name, out id) ? id : fallback;
        int unk = Special(model.String("unk_token") ?? "<unk>", 3);
        if (unk < count)
        {
            types[unk] = TokenType.Unknown;
        }

        return new Vocabulary(tokens, scores, types, Special("<bos>", 2), Special("<eos>", 1), unk, Special("<pad>", 0), AddSpacePrefix: false);
    }

    private static bool IsByteToken(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' && Uri.IsHexDigit(piece[3]) && Uri.IsHexDigit(piece[4]);

    private static T ReadJson<T>(string path, Func<JsonElement, T> read)
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var document = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 64 });
            return read(document.RootElement);
        }
        catch (JsonException e)
        {
            throw PaliGemmaException.InFile(path, $"invalid JSON: {TensorNames.ForMessage(e.Message)}", e);
        }
        catch (InvalidOperationException e)
        {
            throw PaliGemmaException.InFile(path, $"unexpected JSON value: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot read: {e.Message}", e);
        }
    }

    private static string? String(this JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
