namespace PaliGemma.Gguf.Gguf;

/// <summary>
/// Checks a text GGUF and an mmproj GGUF for everything llama.cpp / mtmd would abort the process on
/// (GGML_ASSERT, a scheduler abort) or silently compute wrong, before any native code sees them.
/// </summary>
internal static class ModelFileValidator
{
    public static readonly string[] TextArchitectures = ["gemma", "gemma2"];

    /// <summary>Returns the text model's embedding size after checking the file.</summary>
    public static int ValidateTextModel(GgufFile file)
    {
        string arch = file.Architecture ?? throw PaliGemmaException.InFile(file.Path, "no general.architecture: not a llama.cpp model");
        if (arch == "clip")
        {
            throw PaliGemmaException.InFile(file.Path, "this is an mmproj (vision) file; pass it as --mmproj and the text model as --model");
        }

        if (!TextArchitectures.Contains(arch))
        {
            throw PaliGemmaException.InFile(file.Path, $"unsupported text architecture '{arch}': PaliGemma needs gemma (PaliGemma 1) or gemma2 (PaliGemma 2)");
        }

        long embedding = RequireUInt(file, $"{arch}.embedding_length", 1, 1 << 16);
        RequireUInt(file, $"{arch}.block_count", 1, 512);
        RequireEpsilon(file, $"{arch}.attention.layer_norm_rms_epsilon");
        var tokenEmbedding = file.FindTensor("token_embd.weight") ?? throw PaliGemmaException.InFile(file.Path, "no token_embd.weight tensor");
        if (tokenEmbedding.Dimensions.Length != 2 || tokenEmbedding.Dimensions[0] != embedding)
        {
            throw PaliGemmaException.InFile(file.Path, $"token_embd.weight is {tokenEmbedding.DimensionsText}, expected [{embedding}, n_vocab]");
        }

        if (!file.Metadata.TryGetValue("tokenizer.ggml.tokens", out var tokens) || tokens.ElementType != GgufValueType.String)
        {
            throw PaliGemmaException.InFile(file.Path, "no tokenizer (tokenizer.ggml.tokens)");
        }

        if (tokens.ArrayLength != tokenEmbedding.Dimensions[1])
        {
            throw PaliGemmaException.InFile(file.Path, $"the tokenizer has {tokens.ArrayLength} tokens but token_embd.weight has {tokenEmbedding.Dimensions[1]} rows");
        }

        RequireF32Addends(file, []);

        return (int)embedding;
    }

    /// <summary>Returns the number of image tokens and the image size after checking the file against the text model.</summary>
    public static (int ImageSize, int ImageTokens) ValidateMmproj(GgufFile file, int textEmbedding)
    {
        if (file.Architecture != "clip")
        {
            throw PaliGemmaException.InFile(file.Path, $"not an mmproj file (general.architecture is '{file.Architecture ?? "missing"}', expected clip)");
        }

        string? projector = file.GetString("clip.projector_type");
        if (projector != "janus_pro")
        {
            throw PaliGemmaException.InFile(file.Path, $"projector type '{projector ?? "missing"}' is not a PaliGemma mmproj (janus_pro, as written by paligemma-convert)");
        }

        if (!(file.Metadata.TryGetValue("clip.has_vision_encoder", out var hasVision) && hasVision.Value is true))
        {
            throw PaliGemmaException.InFile(file.Path, "clip.has_vision_encoder is not true");
        }

        long imageSize = RequireUInt(file, "clip.vision.image_size", 14, 4096);
        long patchSize = RequireUInt(file, "clip.vision.patch_size", 1, 1024);
        long embedding = RequireUInt(file, "clip.vision.embedding_length", 1, 1 << 16);
        long heads = RequireUInt(file, "clip.vision.attention.head_count", 1, 1024);
        long layers = RequireUInt(file, "clip.vision.block_count", 1, 512);
        RequireUInt(file, "clip.vision.feed_forward_length", 1, 1 << 20);
        RequireUInt(file, "clip.vision.projection_dim", 1, 1 << 16);
        RequireEpsilon(file, "clip.vision.attention.layer_norm_epsilon");

        foreach (string key in new[] { "clip.vision.image_mean", "clip.vision.image_std" })
        {
            if (!file.Metadata.TryGetValue(key, out var array) || array.Type != GgufValueType.Array || array.ElementType != GgufValueType.Float32 || array.ArrayLength < 3)
            {
                throw PaliGemmaException.InFile(file.Path, $"{key} must be an array of 3 float32 values");
            }
        }

        if (imageSize % patchSize != 0 || embedding % heads != 0)
        {
            throw PaliGemmaException.InFile(file.Path, $"image size {imageSize} is not a multiple of patch size {patchSize}, or embedding {embedding} of heads {heads}");
        }

        long patches = (imageSize / patchSize) * (imageSize / patchSize);
        var patchEmbedding = RequireTensor(file, "v.patch_embd.weight", [patchSize, patchSize, 3, embedding]);
        if (patchEmbedding.Type is not (GgmlType.F16 or GgmlType.F32))
        {
            throw PaliGemmaException.InFile(file.Path, $"v.patch_embd.weight is {patchEmbedding.Type}; ggml's convolution needs F16 or F32");
        }

        RequireTensor(file, "v.position_embd.weight", [embedding, patches]);
        RequireF32Addends(file, ["v.position_embd.weight"]);
        for (int i = 0; i < layers; i++)
        {
            foreach (string name in new[] { "attn_out", "ffn_up", "ffn_down", "attn_q", "attn_k", "attn_v" })
            {
                RequireTensor(file, $"v.blk.{i}.{name}.weight", null);
            }
        }

        RequireTensor(file, "mm.0.weight", null);
        RequireTensor(file, "mm.0.bias", null);
        RequireTensor(file, "mm.1.weight", null);
        var outputBias = RequireTensor(file, "mm.1.bias", null);
        if (outputBias.Dimensions[0] != textEmbedding)
        {
            throw PaliGemmaException.InFile(file.Path, $"the mmproj projects to {outputBias.Dimensions[0]} dimensions but the text model's embedding has {textEmbedding}: they are not from the same checkpoint");
        }

        return ((int)imageSize, (int)patches);
    }

    private static long RequireUInt(GgufFile file, string key, long min, long max)
    {
        if (!file.Metadata.TryGetValue(key, out var value))
        {
            throw PaliGemmaException.InFile(file.Path, $"missing metadata {key}");
        }

        if (value.Type != GgufValueType.UInt32)
        {
            throw PaliGemmaException.InFile(file.Path, $"metadata {key} is {value.Type}, expected UInt32");
        }

        long number = (uint)value.Value;
        if (number < min || number > max)
        {
            throw PaliGemmaException.InFile(file.Path, $"metadata {key} = {number} is outside {min}..{max}");
        }

        return number;
    }

    /// <summary>ggml's norms GGML_ASSERT(eps >= 0): a negative or NaN epsilon aborts the process (found by fuzzing).</summary>
    private static void RequireEpsilon(GgufFile file, string key)
    {
        if (file.Metadata.TryGetValue(key, out var eps) && !(eps.Value is float value && eps.Type == GgufValueType.Float32 && float.IsFinite(value) && value >= 0))
        {
            throw PaliGemmaException.InFile(file.Path, $"{key} must be a finite float32 >= 0, not {eps.Type} {eps}");
        }
    }

    /// <summary>
    /// Norm weights, biases (every 1-D tensor) and the added position embedding are the second
    /// operand of ggml's add/mul, whose CPU kernels abort the process on an F16 or quantized second
    /// operand with an F32 first ("binary_op: unsupported types"). Found by fuzzing the loader.
    /// </summary>
    private static void RequireF32Addends(GgufFile file, string[] alsoAdded)
    {
        foreach (var tensor in file.Tensors)
        {
            if ((tensor.Dimensions.Length == 1 || alsoAdded.Contains(tensor.Name)) && tensor.Type != GgmlType.F32)
            {
                throw PaliGemmaException.InFile(file.Path, $"tensor {tensor.Name} is {tensor.Type}; norm weights, biases and position embeddings must be F32 (ggml's add/mul abort on anything else)");
            }
        }
    }

    private static GgufTensorInfo RequireTensor(GgufFile file, string name, long[]? dimensions)
    {
        var tensor = file.FindTensor(name) ?? throw PaliGemmaException.InFile(file.Path, $"missing tensor {name}");
        if (dimensions is not null && !tensor.Dimensions.SequenceEqual(dimensions))
        {
            throw PaliGemmaException.InFile(file.Path, $"tensor {name} is {tensor.DimensionsText}, expected [{string.Join(", ", dimensions)}]");
        }

        return tensor;
    }
}
