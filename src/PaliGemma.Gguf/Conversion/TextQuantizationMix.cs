using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// The type llama.cpp's quantizer (<c>llama_tensor_get_type</c> in src/llama-quant.cpp) gives each
/// Gemma / Gemma 2 tensor for a file type, so that a file quantized here in one streaming pass has
/// exactly the tensor types <c>llama_model_quantize</c> would give it.
/// </summary>
internal static class TextQuantizationMix
{
    /// <summary>The type of a 2-D weight; <paramref name="layer"/> is -1 outside the blocks.</summary>
    public static GgmlType TypeFor(OutputType fileType, string name, long rowLength, int layer, int layerCount)
    {
        var type = fileType.DefaultType;
        if (!type.IsQuantized())
        {
            return type;
        }

        if (name == "token_embd.weight")
        {
            // Gemma ties the output to token_embd, so llama.cpp treats it as the output tensor.
            type = rowLength % type.BlockSize() != 0 ? GgmlType.Q8_0 : type != GgmlType.Q8_0 ? GgmlType.Q6_K : type;
        }
        else if (name.EndsWith(".attn_v.weight", StringComparison.Ordinal))
        {
            if ((fileType == OutputType.Q4_K_M || fileType == OutputType.Q5_K_M) && UseMoreBits(layer, layerCount))
            {
                type = GgmlType.Q6_K;
            }
            else if (fileType == OutputType.Q4_K_S && layer < 4)
            {
                type = GgmlType.Q5_K;
            }
        }
        else if (name.EndsWith(".ffn_down.weight", StringComparison.Ordinal))
        {
            if ((fileType == OutputType.Q4_K_M || fileType == OutputType.Q5_K_M) && UseMoreBits(layer, layerCount))
            {
                type = GgmlType.Q6_K;
            }
            else if (fileType == OutputType.Q4_K_S && layer < layerCount / 8)
            {
                type = GgmlType.Q5_K;
            }
        }

        return Fallback(type, rowLength, name);
    }

    /// <summary>llama.cpp gives a few layers (first and last eighths, every third between) more bits.</summary>
    private static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - (layers / 8)) % 3 == 2;

    /// <summary>Rows that are not whole blocks fall back the way llama.cpp does (tiny models hit this).</summary>
    private static GgmlType Fallback(GgmlType type, long rowLength, string name)
    {
        if (rowLength % type.BlockSize() == 0)
        {
            return type;
        }

        var fallback = type switch
        {
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
            _ => throw new PaliGemmaException($"tensor {name}: rows of {rowLength} are not whole {type} blocks of {type.BlockSize()} and llama.cpp has no fallback for {type}"),
        };
        return rowLength % fallback.BlockSize() == 0 ? fallback : GgmlType.F16;
    }
}
