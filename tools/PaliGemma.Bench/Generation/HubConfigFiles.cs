using System.Text.Json;

namespace PaliGemma.Bench.Generation;

/// <summary>
/// config.json, preprocessor_config.json, generation_config.json and the shard index, with the
/// fields (and quirks) of the published google/paligemma-3b-pt-224 and google/paligemma2-3b-pt-224.
/// </summary>
internal static class HubConfigFiles
{
    public const string IndexFileName = "model.safetensors.index.json";

    private const int BosId = 2;
    private const int EosId = 1;
    private const int PadId = 0;

    public static void WriteConfig(string path, ModelPreset preset, WeightFormat format, int imageTokenId) =>
        HubJson.Write(path, writer =>
        {
            if (preset.Text.IsGemma2)
            {
                WritePaliGemma2Config(writer, preset, format, imageTokenId);
            }
            else
            {
                WritePaliGemma1Config(writer, preset, format, imageTokenId);
            }
        });

    /// <summary>PaliGemma 1 (transformers 4.42): sizes that equal GemmaConfig's defaults are left out.</summary>
    private static void WritePaliGemma1Config(Utf8JsonWriter writer, ModelPreset preset, WeightFormat format, int imageTokenId)
    {
        var text = preset.Text;
        writer.WriteStartObject();
        writer.WriteStringArray("architectures", "PaliGemmaForConditionalGeneration");
        writer.WriteNumber("bos_token_id", BosId);
        writer.WriteNumber("eos_token_id", EosId);
        writer.WriteNumber("hidden_size", text.HiddenSize);
        writer.WriteNumber("ignore_index", -100);
        writer.WriteNumber("image_token_index", imageTokenId);
        writer.WriteString("model_type", "paligemma");
        writer.WriteNumber("pad_token_id", PadId);
        writer.WriteNumber("projection_dim", text.HiddenSize);
        writer.WriteStartObject("text_config");
        writer.WriteNumber("hidden_size", text.HiddenSize);
        writer.WriteNumber("intermediate_size", text.IntermediateSize);
        writer.WriteString("model_type", text.ModelType);
        writer.WriteNumber("num_attention_heads", text.HeadCount);
        writer.WriteNumber("num_hidden_layers", text.LayerCount);
        writer.WriteNumber("num_image_tokens", preset.Vision.ImageTokens);
        writer.WriteNumber("num_key_value_heads", text.KeyValueHeadCount);
        writer.WriteString("torch_dtype", format.TorchName);
        writer.WriteNumber("vocab_size", text.EmbeddingRows);
        writer.WriteEndObject();
        writer.WriteString("torch_dtype", format.TorchName);
        writer.WriteString("transformers_version", preset.TransformersVersion);
        WriteVisionConfig(writer, preset, format);
        writer.WriteNumber("vocab_size", text.EmbeddingRows);
        writer.WriteEndObject();
    }

    /// <summary>
    /// PaliGemma 2 (transformers 4.47). The top-level hidden_size 2048 and num_hidden_layers are
    /// stale values the published file carries; readers take the sizes from text_config.
    /// </summary>
    private static void WritePaliGemma2Config(Utf8JsonWriter writer, ModelPreset preset, WeightFormat format, int imageTokenId)
    {
        var text = preset.Text;
        writer.WriteStartObject();
        writer.WriteNumber("_vocab_size", imageTokenId);
        writer.WriteStringArray("architectures", "PaliGemmaForConditionalGeneration");
        writer.WriteNumber("bos_token_id", BosId);
        writer.WriteNumber("eos_token_id", EosId);
        writer.WriteNumber("hidden_size", 2048);
        writer.WriteNumber("image_token_index", imageTokenId);
        writer.WriteString("model_type", "paligemma");
        writer.WriteNumber("num_hidden_layers", text.LayerCount);
        writer.WriteNumber("pad_token_id", PadId);
        writer.WriteNumber("projection_dim", text.HiddenSize);
        writer.WriteStartObject("text_config");
        writer.WriteStringArray("architectures", "Gemma2ForCausalLM");
        writer.WritePythonFloat("attn_logit_softcapping", 50.0);
        writer.WriteString("cache_implementation", "hybrid");
        writer.WriteStartArray("eos_token_id");
        writer.WriteNumberValue(EosId);
        writer.WriteNumberValue(107);
        writer.WriteEndArray();
        writer.WritePythonFloat("final_logit_softcapping", 30.0);
        writer.WriteString("hidden_act", "gelu_pytorch_tanh");
        writer.WriteString("hidden_activation", "gelu_pytorch_tanh");
        writer.WriteNumber("hidden_size", text.HiddenSize);
        writer.WriteNumber("intermediate_size", text.IntermediateSize);
        writer.WriteString("model_type", text.ModelType);
        writer.WriteNumber("num_hidden_layers", text.LayerCount);
        writer.WriteNumber("num_image_tokens", preset.Vision.ImageTokens);
        writer.WriteNumber("num_key_value_heads", text.KeyValueHeadCount);
        writer.WriteNumber("query_pre_attn_scalar", text.HeadDim);
        writer.WriteNumber("sliding_window", 4096);
        writer.WriteString("torch_dtype", format.TorchName);
        writer.WriteNumber("vocab_size", text.EmbeddingRows);
        writer.WriteEndObject();
        writer.WriteString("torch_dtype", format.TorchName);
        writer.WriteString("transformers_version", preset.TransformersVersion);
        WriteVisionConfig(writer, preset, format);
        writer.WriteEndObject();
    }

    /// <summary>The SigLIP config: PaliGemma 1 names the projector activation, PaliGemma 2 the positions and dtype.</summary>
    private static void WriteVisionConfig(Utf8JsonWriter writer, ModelPreset preset, WeightFormat format)
    {
        var vision = preset.Vision;
        bool paliGemma2 = preset.Text.IsGemma2;
        writer.WriteStartObject("vision_config");
        writer.WriteNumber("hidden_size", vision.HiddenSize);
        writer.WriteNumber("intermediate_size", vision.IntermediateSize);
        writer.WriteString("model_type", "siglip_vision_model");
        writer.WriteNumber("num_attention_heads", vision.HeadCount);
        writer.WriteNumber("num_hidden_layers", vision.LayerCount);
        writer.WriteNumber("num_image_tokens", vision.ImageTokens);
        if (paliGemma2)
        {
            writer.WriteNumber("num_positions", vision.ImageTokens);
        }

        writer.WriteNumber("patch_size", vision.PatchSize);
        writer.WriteNumber("projection_dim", preset.Text.HiddenSize);
        if (paliGemma2)
        {
            writer.WriteString("torch_dtype", format.TorchName);
        }
        else
        {
            writer.WriteString("projector_hidden_act", "gelu_fast");
        }

        writer.WriteBoolean("vision_use_head", false);
        writer.WriteEndObject();
    }

    public static void WritePreprocessorConfig(string path, VisionShape vision) => HubJson.Write(path, writer =>
    {
        writer.WriteStartObject();
        writer.WriteNull("do_convert_rgb");
        writer.WriteBoolean("do_normalize", true);
        writer.WriteBoolean("do_rescale", true);
        writer.WriteBoolean("do_resize", true);
        writer.WriteNumberArray("image_mean", 0.5, 0.5, 0.5);
        writer.WriteString("image_processor_type", "SiglipImageProcessor");
        writer.WriteNumber("image_seq_length", vision.ImageTokens);
        writer.WriteNumberArray("image_std", 0.5, 0.5, 0.5);
        writer.WriteString("processor_class", "PaliGemmaProcessor");
        // PIL's BICUBIC.
        writer.WriteNumber("resample", 3);
        writer.WriteNumber("rescale_factor", 1 / 255.0);
        writer.WriteStartObject("size");
        writer.WriteNumber("height", vision.ImageSize);
        writer.WriteNumber("width", vision.ImageSize);
        writer.WriteEndObject();
        writer.WriteEndObject();
    });

    public static void WriteGenerationConfig(string path, ModelPreset preset) => HubJson.Write(path, writer =>
    {
        writer.WriteStartObject();
        writer.WriteBoolean("_from_model_config", true);
        writer.WriteNumber("bos_token_id", BosId);
        writer.WriteNumber("eos_token_id", EosId);
        writer.WriteNumber("pad_token_id", PadId);
        writer.WriteString("transformers_version", preset.TransformersVersion);
        writer.WriteEndObject();
    });

    /// <summary>The index save_pretrained writes next to sharded weights: total bytes and each tensor's file, by name.</summary>
    public static void WriteIndex(string path, IReadOnlyList<Shard> shards) => HubJson.Write(path, writer =>
    {
        writer.WriteStartObject();
        writer.WriteStartObject("metadata");
        writer.WriteNumber("total_size", shards.Sum(s => s.DataBytes));
        writer.WriteEndObject();
        writer.WriteStartObject("weight_map");
        foreach (var (name, file) in shards.SelectMany(s => s.Tensors.Select(t => (t.Name, s.FileName))).OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            writer.WriteString(name, file);
        }

        writer.WriteEndObject();
        writer.WriteEndObject();
    });
}
