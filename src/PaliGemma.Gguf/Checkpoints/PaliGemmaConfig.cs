using System.Text.Json;

namespace PaliGemma.Gguf.Checkpoints;

/// <summary>
/// The parts of a PaliGemma config.json the conversion needs, with transformers' defaults for the
/// fields Hub configs leave out (they only write fields that differ from the defaults).
/// </summary>
public sealed record PaliGemmaConfig(TextConfig Text, VisionConfig Vision, int ProjectionDim, int ImageTokenId, int VocabSize)
{
    /// <summary><c>_name_or_path</c>, where transformers wrote what the checkpoint was saved from.</summary>
    public string? NameOrPath { get; init; }

    public static PaliGemmaConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "config.json not found: is this a Hugging Face PaliGemma checkpoint folder?");
        }

        try
        {
            using var stream = File.OpenRead(path);
            using var document = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 32, CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            return Parse(path, document.RootElement);
        }
        catch (JsonException e)
        {
            throw PaliGemmaException.InFile(path, $"invalid JSON: {TensorNames.ForMessage(e.Message)}", e);
        }
        catch (InvalidOperationException e)
        {
            throw PaliGemmaException.InFile(path, $"unexpected value type: {e.Message}", e);
        }
        catch (FormatException e)
        {
            throw PaliGemmaException.InFile(path, $"unexpected value: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot read: {e.Message}", e);
        }
    }

    private static PaliGemmaConfig Parse(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw PaliGemmaException.InFile(path, "config.json is not a JSON object");
        }

        string modelType = root.String("model_type") ?? "";
        if (modelType != "paligemma")
        {
            string architectures = root.TryGetProperty("architectures", out var a) ? a.Describe() : "none";
            throw PaliGemmaException.InFile(path, $"unsupported model_type '{TensorNames.ForMessage(modelType)}' (architectures {architectures}): only PaliGemma (model_type \"paligemma\") checkpoints convert");
        }

        var textElement = root.TryGetProperty("text_config", out var t) && t.ValueKind == JsonValueKind.Object ? t : default;
        var visionElement = root.TryGetProperty("vision_config", out var v) && v.ValueKind == JsonValueKind.Object ? v : default;

        var text = TextConfig.Parse(path, textElement);
        var vision = VisionConfig.Parse(path, visionElement);
        int projectionDim = visionElement.Int("projection_dim") ?? root.Int("projection_dim") ?? 2048;
        int vocabSize = textElement.Int("vocab_size") ?? root.Int("vocab_size") ?? 257216;
        int imageTokenId = root.Int("image_token_index") ?? root.Int("image_token_id") ?? 257152;

        var config = new PaliGemmaConfig(text with { VocabSize = vocabSize }, vision, projectionDim, imageTokenId, vocabSize) { NameOrPath = root.String("_name_or_path") };
        config.Validate(path);
        return config;
    }

    private void Validate(string path)
    {
        void Require(bool condition, string problem)
        {
            if (!condition)
            {
                throw PaliGemmaException.InFile(path, problem);
            }
        }

        Require(Text.HiddenSize > 0 && Text.LayerCount > 0 && Text.HeadCount > 0 && Text.KeyValueHeadCount > 0 && Text.HeadDim > 0 && Text.IntermediateSize > 0, "text_config sizes must be positive");
        Require(Text.HeadCount % Text.KeyValueHeadCount == 0, $"text_config: num_attention_heads {Text.HeadCount} is not a multiple of num_key_value_heads {Text.KeyValueHeadCount}");
        Require(Vision.HiddenSize > 0 && Vision.LayerCount > 0 && Vision.HeadCount > 0 && Vision.IntermediateSize > 0, "vision_config sizes must be positive");
        Require(Vision.HiddenSize % Vision.HeadCount == 0, $"vision_config: hidden_size {Vision.HiddenSize} is not a multiple of num_attention_heads {Vision.HeadCount}");
        Require(Vision.PatchSize > 0 && Vision.ImageSize > 0 && Vision.ImageSize % Vision.PatchSize == 0, $"vision_config: image_size {Vision.ImageSize} is not a multiple of patch_size {Vision.PatchSize}");
        Require(Vision.ImageSize <= 4096, $"vision_config: image_size {Vision.ImageSize} is implausibly large");
        Require(ProjectionDim == Text.HiddenSize, $"projection_dim {ProjectionDim} differs from the text hidden_size {Text.HiddenSize}");
        Require(VocabSize > 0 && ImageTokenId >= 0 && ImageTokenId < VocabSize, $"image_token_index {ImageTokenId} is outside the vocabulary of {VocabSize}");
    }
}

/// <summary>The Gemma / Gemma 2 decoder's hyper-parameters.</summary>
public sealed record TextConfig(
    string ModelType,
    int HiddenSize,
    int IntermediateSize,
    int LayerCount,
    int HeadCount,
    int KeyValueHeadCount,
    int HeadDim,
    double RmsNormEps,
    double RopeTheta,
    int MaxPositionEmbeddings,
    int VocabSize,
    double QueryPreAttnScalar,
    double? AttnLogitSoftcapping,
    double? FinalLogitSoftcapping,
    int? SlidingWindow)
{
    public bool IsGemma2 => ModelType == "gemma2";

    internal static TextConfig Parse(string path, JsonElement e)
    {
        string modelType = e.String("model_type") ?? "gemma";
        if (modelType is not ("gemma" or "gemma2"))
        {
            throw PaliGemmaException.InFile(path, $"unsupported text_config.model_type '{TensorNames.ForMessage(modelType)}': expected gemma (PaliGemma) or gemma2 (PaliGemma 2)");
        }

        // transformers' GemmaConfig / Gemma2Config defaults, except where PaliGemmaConfig builds its own
        // text config (hidden 2048, 18 layers, 8 heads, 1 KV head, FFN 16384: paligemma-3b).
        bool gemma2 = modelType == "gemma2";
        int headDim = e.Int("head_dim") ?? 256;
        return new TextConfig(
            modelType,
            HiddenSize: e.Int("hidden_size") ?? (gemma2 ? 2304 : 2048),
            IntermediateSize: e.Int("intermediate_size") ?? (gemma2 ? 9216 : 16384),
            LayerCount: e.Int("num_hidden_layers") ?? (gemma2 ? 26 : 18),
            HeadCount: e.Int("num_attention_heads") ?? 8,
            KeyValueHeadCount: e.Int("num_key_value_heads") ?? (gemma2 ? 4 : 1),
            HeadDim: headDim,
            RmsNormEps: e.Double("rms_norm_eps") ?? 1e-6,
            RopeTheta: e.Double("rope_theta") ?? 10000.0,
            MaxPositionEmbeddings: e.Int("max_position_embeddings") ?? 8192,
            VocabSize: 0,
            QueryPreAttnScalar: e.Double("query_pre_attn_scalar") ?? headDim,
            AttnLogitSoftcapping: gemma2 ? e.Double("attn_logit_softcapping") ?? 50.0 : null,
            FinalLogitSoftcapping: gemma2 ? e.Double("final_logit_softcapping") ?? 30.0 : null,
            SlidingWindow: gemma2 ? e.Int("sliding_window") ?? 4096 : null);
    }
}

/// <summary>The SigLIP vision tower's hyper-parameters.</summary>
public sealed record VisionConfig(int HiddenSize, int IntermediateSize, int LayerCount, int HeadCount, int ImageSize, int PatchSize, double LayerNormEps)
{
    public int PatchesPerSide => ImageSize / PatchSize;

    public int ImageTokens => PatchesPerSide * PatchesPerSide;

    internal static VisionConfig Parse(string path, JsonElement e) => new(
        HiddenSize: e.Int("hidden_size") ?? 1152,
        IntermediateSize: e.Int("intermediate_size") ?? 4304,
        LayerCount: e.Int("num_hidden_layers") ?? 27,
        HeadCount: e.Int("num_attention_heads") ?? 16,
        ImageSize: e.Int("image_size") ?? 224,
        PatchSize: e.Int("patch_size") ?? 14,
        LayerNormEps: e.Double("layer_norm_eps") ?? 1e-6);
}

internal static class JsonConfigExtensions
{
    public static string? String(this JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static int? Int(this JsonElement e, string name)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int value))
        {
            return value;
        }

        throw new FormatException($"\"{name}\" must be an integer, found {v.Describe()}");
    }

    public static double? Double(this JsonElement e, string name)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double value) && double.IsFinite(value))
        {
            return value;
        }

        throw new FormatException($"\"{name}\" must be a number, found {v.Describe()}");
    }

    /// <summary>
    /// A value as a one-line error message shows it: the raw text can span lines (a pretty-printed
    /// array) and be of any length, so containers are summarized and names escaped.
    /// </summary>
    public static string Describe(this JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Array when v.GetArrayLength() <= 8 && v.EnumerateArray().All(i => i.ValueKind == JsonValueKind.String) =>
            "[" + string.Join(", ", v.EnumerateArray().Select(i => TensorNames.ForMessage(i.GetString()!))) + "]",
        JsonValueKind.Array => $"an array of {v.GetArrayLength()} values",
        JsonValueKind.Object => "an object",
        _ => TensorNames.ForMessage(v.GetRawText()),
    };
}
