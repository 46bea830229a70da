namespace PaliGemma.Bench.Generation;

/// <summary>How a tensor's random values are drawn: uniform with this mean and standard deviation.</summary>
internal readonly record struct ValueDistribution(float Mean, float StdDev)
{
    /// <summary>Linear and embedding weights, at the usual initializer_range.</summary>
    public static ValueDistribution Weight { get; } = new(0f, 0.02f);

    /// <summary>Small biases keep activations centred.</summary>
    public static ValueDistribution Bias { get; } = new(0f, 0.01f);

    /// <summary>Gemma's RMSNorm multiplies by (1 + w), so w near 0 is a near-identity norm.</summary>
    public static ValueDistribution GemmaNorm { get; } = new(0f, 0.02f);

    /// <summary>SigLIP's LayerNorm multiplies by w, so w near 1 is a near-identity norm.</summary>
    public static ValueDistribution LayerNormWeight { get; } = new(1f, 0.02f);
}

/// <summary>One tensor of the checkpoint: Hub name, PyTorch shape ([out, in] for linear layers), values.</summary>
internal sealed record TensorSpec(string Name, long[] Shape, ValueDistribution Values)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b));
}

/// <summary>
/// The tensors of a published PaliGemma checkpoint, named as the Hub files name them, in the order
/// transformers' state_dict lists them (module registration order): vision tower, projector,
/// language model. That order decides which shard each tensor lands in.
/// </summary>
internal static class TensorLayout
{
    public static IReadOnlyList<TensorSpec> Build(ModelPreset preset)
    {
        var tensors = new List<TensorSpec>();
        AddVisionTower(tensors, preset.Vision);
        AddProjector(tensors, preset.Text.HiddenSize, preset.Vision.HiddenSize);
        AddLanguageModel(tensors, preset.Text);
        return tensors;
    }

    private static void AddVisionTower(List<TensorSpec> tensors, VisionShape vision)
    {
        const string Root = "vision_tower.vision_model";
        int d = vision.HiddenSize;
        void Add(string name, ValueDistribution values, params long[] shape) => tensors.Add(new($"{Root}.{name}", shape, values));
        void Linear(string name, long outputs, long inputs)
        {
            Add($"{name}.weight", ValueDistribution.Weight, outputs, inputs);
            Add($"{name}.bias", ValueDistribution.Bias, outputs);
        }

        void LayerNorm(string name)
        {
            Add($"{name}.weight", ValueDistribution.LayerNormWeight, d);
            Add($"{name}.bias", ValueDistribution.Bias, d);
        }

        Add("embeddings.patch_embedding.weight", ValueDistribution.Weight, d, 3, vision.PatchSize, vision.PatchSize);
        Add("embeddings.patch_embedding.bias", ValueDistribution.Bias, d);
        Add("embeddings.position_embedding.weight", ValueDistribution.Weight, vision.ImageTokens, d);
        for (int i = 0; i < vision.LayerCount; i++)
        {
            string layer = $"encoder.layers.{i}";
            // SiglipAttention registers k, v, q, then out.
            foreach (string projection in new[] { "k_proj", "v_proj", "q_proj", "out_proj" })
            {
                Linear($"{layer}.self_attn.{projection}", d, d);
            }

            LayerNorm($"{layer}.layer_norm1");
            Linear($"{layer}.mlp.fc1", vision.IntermediateSize, d);
            Linear($"{layer}.mlp.fc2", d, vision.IntermediateSize);
            LayerNorm($"{layer}.layer_norm2");
        }

        LayerNorm("post_layernorm");
    }

    private static void AddProjector(List<TensorSpec> tensors, int textHidden, int visionHidden)
    {
        tensors.Add(new("multi_modal_projector.linear.weight", [textHidden, visionHidden], ValueDistribution.Weight));
        tensors.Add(new("multi_modal_projector.linear.bias", [textHidden], ValueDistribution.Bias));
    }

    private static void AddLanguageModel(List<TensorSpec> tensors, TextShape text)
    {
        const string Root = "language_model.model";
        int d = text.HiddenSize;
        void Add(string name, ValueDistribution values, params long[] shape) => tensors.Add(new($"{Root}.{name}", shape, values));

        // No lm_head: PaliGemma ties it to embed_tokens and the Hub files do not store it.
        Add("embed_tokens.weight", ValueDistribution.Weight, text.EmbeddingRows, d);
        for (int i = 0; i < text.LayerCount; i++)
        {
            string layer = $"layers.{i}";
            Add($"{layer}.self_attn.q_proj.weight", ValueDistribution.Weight, text.HeadCount * text.HeadDim, d);
            Add($"{layer}.self_attn.k_proj.weight", ValueDistribution.Weight, text.KeyValueHeadCount * text.HeadDim, d);
            Add($"{layer}.self_attn.v_proj.weight", ValueDistribution.Weight, text.KeyValueHeadCount * text.HeadDim, d);
            Add($"{layer}.self_attn.o_proj.weight", ValueDistribution.Weight, d, text.HeadCount * text.HeadDim);
            Add($"{layer}.mlp.gate_proj.weight", ValueDistribution.Weight, text.IntermediateSize, d);
            Add($"{layer}.mlp.up_proj.weight", ValueDistribution.Weight, text.IntermediateSize, d);
            Add($"{layer}.mlp.down_proj.weight", ValueDistribution.Weight, d, text.IntermediateSize);
            Add($"{layer}.input_layernorm.weight", ValueDistribution.GemmaNorm, d);
            Add($"{layer}.post_attention_layernorm.weight", ValueDistribution.GemmaNorm, d);
            if (text.IsGemma2)
            {
                Add($"{layer}.pre_feedforward_layernorm.weight", ValueDistribution.GemmaNorm, d);
                Add($"{layer}.post_feedforward_layernorm.weight", ValueDistribution.GemmaNorm, d);
            }
        }

        Add("norm.weight", ValueDistribution.GemmaNorm, d);
    }
}
