using System.Runtime.InteropServices;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// A small random PaliGemma (Gemma text) or PaliGemma 2 (Gemma 2 text) whose text rows are 256
/// wide, so that llama.cpp's K-quant mixes apply without the block-size fallbacks the 64-wide
/// golden models hit. Tokenizer and vision tower sizes follow tiny-paligemma-224.
/// </summary>
public static class SyntheticCheckpoint
{
    private static readonly Lazy<string> Wide = new(() => Create(TestModels.NewFolder("wide-paligemma"), hidden: 256, ffn: 512, layers: 8));

    private static readonly Lazy<string> Wide2 = new(() => Create(TestModels.NewFolder("wide-paligemma2"), hidden: 256, ffn: 512, layers: 8, gemma2: true));

    public static string WideGemma => Wide.Value;

    public static string WideGemma2 => Wide2.Value;

    public static string Create(string folder, int hidden, int ffn, int layers, int seed = 1, int imageSize = 224, bool gemma2 = false)
    {
        var golden = GoldenData.Model("tiny-paligemma-224");
        foreach (string file in new[] { "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json" })
        {
            File.Copy(Path.Combine(golden.Directory, file), Path.Combine(folder, file));
        }

        const int heads = 4, headDim = 64, vision = 64, visionFfn = 112, vocab = 2176;
        // Gemma 2's query_pre_attn_scalar differs from head_dim so that folding it into attn_q matters.
        string textModel = gemma2
            ? "\"model_type\": \"gemma2\", \"query_pre_attn_scalar\": 48, \"attn_logit_softcapping\": 50.0, \"final_logit_softcapping\": 30.0, \"sliding_window\": 4096,"
            : "\"model_type\": \"gemma\",";
        File.WriteAllText(Path.Combine(folder, "config.json"), $$"""
            {
              "architectures": ["PaliGemmaForConditionalGeneration"], "model_type": "paligemma",
              "hidden_size": {{hidden}}, "projection_dim": {{hidden}}, "image_token_index": 2152, "vocab_size": {{vocab}},
              "text_config": {{{textModel}} "hidden_size": {{hidden}}, "intermediate_size": {{ffn}}, "num_attention_heads": {{heads}},
                "num_key_value_heads": 1, "head_dim": {{headDim}}, "num_hidden_layers": {{layers}}, "vocab_size": {{vocab}}},
              "vision_config": {"model_type": "siglip_vision_model", "hidden_size": {{vision}}, "intermediate_size": {{visionFfn}},
                "num_attention_heads": 4, "num_hidden_layers": 2, "patch_size": 14, "image_size": {{imageSize}}, "projection_dim": {{hidden}}}
            }
            """);

        var tensors = new List<(string Name, long[] Shape, float Scale, float Offset)>
        {
            ("language_model.model.embed_tokens.weight", [vocab, hidden], 0.5f, 0),
            ("language_model.model.norm.weight", [hidden], 0.1f, 0),
            ("multi_modal_projector.linear.weight", [hidden, vision], 0.1f, 0),
            ("multi_modal_projector.linear.bias", [hidden], 0.1f, 0),
            ("vision_tower.vision_model.embeddings.patch_embedding.weight", [vision, 3, 14, 14], 0.05f, 0),
            ("vision_tower.vision_model.embeddings.patch_embedding.bias", [vision], 0.05f, 0),
            ("vision_tower.vision_model.embeddings.position_embedding.weight", [(imageSize / 14) * (imageSize / 14), vision], 0.1f, 0),
            ("vision_tower.vision_model.post_layernorm.weight", [vision], 0.1f, 1),
            ("vision_tower.vision_model.post_layernorm.bias", [vision], 0.1f, 0),
        };
        for (int i = 0; i < layers; i++)
        {
            string p = $"language_model.model.layers.{i}";
            tensors.Add(($"{p}.input_layernorm.weight", [hidden], 0.1f, 0));
            tensors.Add(($"{p}.post_attention_layernorm.weight", [hidden], 0.1f, 0));
            if (gemma2)
            {
                tensors.Add(($"{p}.pre_feedforward_layernorm.weight", [hidden], 0.1f, 0));
                tensors.Add(($"{p}.post_feedforward_layernorm.weight", [hidden], 0.1f, 0));
            }

            tensors.Add(($"{p}.self_attn.q_proj.weight", [heads * headDim, hidden], 0.05f, 0));
            tensors.Add(($"{p}.self_attn.k_proj.weight", [headDim, hidden], 0.05f, 0));
            tensors.Add(($"{p}.self_attn.v_proj.weight", [headDim, hidden], 0.05f, 0));
            tensors.Add(($"{p}.self_attn.o_proj.weight", [hidden, heads * headDim], 0.05f, 0));
            tensors.Add(($"{p}.mlp.gate_proj.weight", [ffn, hidden], 0.05f, 0));
            tensors.Add(($"{p}.mlp.up_proj.weight", [ffn, hidden], 0.05f, 0));
            tensors.Add(($"{p}.mlp.down_proj.weight", [hidden, ffn], 0.05f, 0));
        }

        for (int i = 0; i < 2; i++)
        {
            string p = $"vision_tower.vision_model.encoder.layers.{i}";
            foreach (string n in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                tensors.Add(($"{p}.self_attn.{n}.weight", [vision, vision], 0.1f, 0));
                tensors.Add(($"{p}.self_attn.{n}.bias", [vision], 0.05f, 0));
            }

            tensors.Add(($"{p}.layer_norm1.weight", [vision], 0.1f, 1));
            tensors.Add(($"{p}.layer_norm1.bias", [vision], 0.05f, 0));
            tensors.Add(($"{p}.layer_norm2.weight", [vision], 0.1f, 1));
            tensors.Add(($"{p}.layer_norm2.bias", [vision], 0.05f, 0));
            tensors.Add(($"{p}.mlp.fc1.weight", [visionFfn, vision], 0.1f, 0));
            tensors.Add(($"{p}.mlp.fc1.bias", [visionFfn], 0.05f, 0));
            tensors.Add(($"{p}.mlp.fc2.weight", [vision, visionFfn], 0.1f, 0));
            tensors.Add(($"{p}.mlp.fc2.bias", [vision], 0.05f, 0));
        }

        var random = new Random(seed);
        using var stream = File.Create(Path.Combine(folder, "model.safetensors"));
        using var writer = new SafetensorsWriter(stream);
        foreach (var t in tensors)
        {
            writer.AddTensor(t.Name, TensorDType.F32, t.Shape);
        }

        writer.WriteHeader();
        foreach (var t in tensors)
        {
            var values = new float[t.Shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = t.Offset + (t.Scale * (float)((random.NextDouble() * 2) - 1));
            }

            writer.WriteData(MemoryMarshal.AsBytes(values.AsSpan()));
        }

        return folder;
    }
}
