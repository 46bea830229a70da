using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Tokenizer;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// Plans the text GGUF: the Gemma / Gemma 2 decoder in llama.cpp's layout with its tokenizer
/// (docs/DESIGN.md §2).
/// </summary>
internal static class TextModelConverter
{
    public static (List<KeyValuePair<string, GgufValue>> Metadata, List<TensorPlan> Tensors) Plan(Checkpoint checkpoint, Vocabulary vocabulary, OutputType outputType, string name)
    {
        var text = checkpoint.Config.Text;
        string arch = text.ModelType;
        var shapes = new ShapeChecker(checkpoint);

        var embedding = shapes.Expect("text.embed_tokens.weight", -1, text.HiddenSize);
        long embeddingRows = embedding.Shape[0];
        int rows = Math.Max(text.VocabSize, (int)embeddingRows);
        if (embeddingRows > rows)
        {
            throw PaliGemmaException.InFile(checkpoint.Directory, $"embedding has {embeddingRows} rows, more than vocab_size {text.VocabSize}");
        }

        vocabulary = vocabulary.PadTo(rows);

        var metadata = new List<KeyValuePair<string, GgufValue>>();
        void Add(string key, GgufValue value) => metadata.Add(new(key, value));

        Add("general.architecture", GgufValue.Of(arch));
        Add("general.name", GgufValue.Of(name));
        Add("general.file_type", GgufValue.Of((uint)outputType.FileType));
        if (outputType.IsQuantized)
        {
            Add("general.quantization_version", GgufValue.Of(2u));
        }

        Add($"{arch}.context_length", GgufValue.Of((uint)text.MaxPositionEmbeddings));
        Add($"{arch}.embedding_length", GgufValue.Of((uint)text.HiddenSize));
        Add($"{arch}.block_count", GgufValue.Of((uint)text.LayerCount));
        Add($"{arch}.feed_forward_length", GgufValue.Of((uint)text.IntermediateSize));
        Add($"{arch}.attention.head_count", GgufValue.Of((uint)text.HeadCount));
        Add($"{arch}.attention.head_count_kv", GgufValue.Of((uint)text.KeyValueHeadCount));
        Add($"{arch}.attention.key_length", GgufValue.Of((uint)text.HeadDim));
        Add($"{arch}.attention.value_length", GgufValue.Of((uint)text.HeadDim));
        Add($"{arch}.attention.layer_norm_rms_epsilon", GgufValue.Of((float)text.RmsNormEps));
        Add($"{arch}.rope.freq_base", GgufValue.Of((float)text.RopeTheta));
        if (text.IsGemma2)
        {
            Add($"{arch}.attn_logit_softcapping", GgufValue.Of((float)text.AttnLogitSoftcapping!.Value));
            Add($"{arch}.final_logit_softcapping", GgufValue.Of((float)text.FinalLogitSoftcapping!.Value));
            Add($"{arch}.attention.sliding_window", GgufValue.Of((uint)text.SlidingWindow!.Value));
        }

        AddTokenizer(metadata, vocabulary);

        // Weight matrices take the type llama.cpp's quantizer would give them for this file type.
        TensorPlan Weight(string gguf, TensorSource source, int layer) =>
            new(gguf, source, TextQuantizationMix.TypeFor(outputType, gguf, source.RowLength, layer, text.LayerCount));

        var plans = new List<TensorPlan> { Weight("token_embd.weight", TensorSource.From(embedding).PadRowsTo(rows), -1) };

        // Gemma's RMSNorm computes x * (1 + w); llama.cpp's computes x * w.
        static float PlusOne(float w) => w + 1f;
        TensorPlan Norm(string gguf, string hf) => new(gguf, TensorSource.From(shapes.Expect(hf, text.HiddenSize), PlusOne), GgmlType.F32);

        float queryScale = (float)QueryScale(text);
        int qWidth = text.HeadCount * text.HeadDim;
        int kvWidth = text.KeyValueHeadCount * text.HeadDim;
        for (int i = 0; i < text.LayerCount; i++)
        {
            string hf = $"text.layers.{i}";
            string blk = $"blk.{i}";
            plans.Add(Norm($"{blk}.attn_norm.weight", $"{hf}.input_layernorm.weight"));
            var q = shapes.Expect($"{hf}.self_attn.q_proj.weight", qWidth, text.HiddenSize);
            plans.Add(Weight($"{blk}.attn_q.weight", queryScale == 1f ? TensorSource.From(q) : TensorSource.From(q, x => x * queryScale), i));
            plans.Add(Weight($"{blk}.attn_k.weight", TensorSource.From(shapes.Expect($"{hf}.self_attn.k_proj.weight", kvWidth, text.HiddenSize)), i));
            plans.Add(Weight($"{blk}.attn_v.weight", TensorSource.From(shapes.Expect($"{hf}.self_attn.v_proj.weight", kvWidth, text.HiddenSize)), i));
            plans.Add(Weight($"{blk}.attn_output.weight", TensorSource.From(shapes.Expect($"{hf}.self_attn.o_proj.weight", text.HiddenSize, qWidth)), i));
            if (text.IsGemma2)
            {
                plans.Add(Norm($"{blk}.post_attention_norm.weight", $"{hf}.post_attention_layernorm.weight"));
                plans.Add(Norm($"{blk}.ffn_norm.weight", $"{hf}.pre_feedforward_layernorm.weight"));
                plans.Add(Norm($"{blk}.post_ffw_norm.weight", $"{hf}.post_feedforward_layernorm.weight"));
            }
            else
            {
                plans.Add(Norm($"{blk}.ffn_norm.weight", $"{hf}.post_attention_layernorm.weight"));
            }

            plans.Add(Weight($"{blk}.ffn_gate.weight", TensorSource.From(shapes.Expect($"{hf}.mlp.gate_proj.weight", text.IntermediateSize, text.HiddenSize)), i));
            plans.Add(Weight($"{blk}.ffn_up.weight", TensorSource.From(shapes.Expect($"{hf}.mlp.up_proj.weight", text.IntermediateSize, text.HiddenSize)), i));
            plans.Add(Weight($"{blk}.ffn_down.weight", TensorSource.From(shapes.Expect($"{hf}.mlp.down_proj.weight", text.HiddenSize, text.IntermediateSize)), i));
        }

        plans.Add(Norm("output_norm.weight", "text.norm.weight"));

        // The output projection is tied to token_embd: llama.cpp uses token_embd when "output" is absent.
        return (metadata, plans);
    }

    /// <summary>
    /// llama.cpp scales Gemma 2 queries by 1/sqrt(head_dim) (1/sqrt(n_embd/n_head) for the 46-layer
    /// 27B) and ignores query_pre_attn_scalar; fold the difference into attn_q.
    /// </summary>
    internal static double QueryScale(TextConfig text)
    {
        if (!text.IsGemma2)
        {
            return 1.0;
        }

        double llamaDenominator = text.LayerCount == 46 ? (double)text.HiddenSize / text.HeadCount : text.HeadDim;
        return Math.Abs(llamaDenominator - text.QueryPreAttnScalar) < 1e-9 ? 1.0 : Math.Sqrt(llamaDenominator / text.QueryPreAttnScalar);
    }

    private static void AddTokenizer(List<KeyValuePair<string, GgufValue>> metadata, Vocabulary vocabulary)
    {
        void Add(string key, GgufValue value) => metadata.Add(new(key, value));
        Add("tokenizer.ggml.model", GgufValue.Of("llama"));
        Add("tokenizer.ggml.tokens", GgufValue.Array(vocabulary.Tokens.ToArray()));
        Add("tokenizer.ggml.scores", GgufValue.Array(vocabulary.Scores.ToArray()));
        Add("tokenizer.ggml.token_type", GgufValue.Array(vocabulary.Types.Select(t => (int)t).ToArray()));
        Add("tokenizer.ggml.bos_token_id", GgufValue.Of((uint)vocabulary.BosId));
        Add("tokenizer.ggml.eos_token_id", GgufValue.Of((uint)vocabulary.EosId));
        Add("tokenizer.ggml.unknown_token_id", GgufValue.Of((uint)vocabulary.UnknownId));
        Add("tokenizer.ggml.padding_token_id", GgufValue.Of((uint)vocabulary.PaddingId));
        Add("tokenizer.ggml.add_bos_token", GgufValue.Of(true));
        Add("tokenizer.ggml.add_eos_token", GgufValue.Of(false));
        Add("tokenizer.ggml.add_space_prefix", GgufValue.Of(false));
    }
}

/// <summary>Fetches checkpoint tensors and checks their shapes against the config, with errors that name both.</summary>
internal sealed class ShapeChecker(Checkpoint checkpoint)
{
    /// <summary>The tensor, whose PyTorch shape must equal <paramref name="shape"/> (-1: any size).</summary>
    public CheckpointTensor Expect(string name, params long[] shape)
    {
        var tensor = checkpoint.Get(name);
        bool matches = tensor.Shape.Length == shape.Length && tensor.Shape.Zip(shape).All(p => p.Second < 0 || p.First == p.Second);
        if (!matches)
        {
            string expected = "[" + string.Join(", ", shape.Select(s => s < 0 ? "*" : s.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
            throw PaliGemmaException.InFile(tensor.File.Path, $"tensor '{tensor.Info.Name}' has shape {tensor.Info.ShapeText} but config.json implies {expected}");
        }

        if (!tensor.Info.DType.IsFloatingPoint())
        {
            throw PaliGemmaException.InFile(tensor.File.Path, $"tensor '{tensor.Info.Name}' has dtype {tensor.Info.DType}; only F32, F16 and BF16 convert");
        }

        return tensor;
    }
}
