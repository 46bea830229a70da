using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// Plans the mmproj GGUF: the SigLIP tower in llama.cpp's clip layout plus PaliGemma's linear
/// projector expressed as a clip projector (docs/DESIGN.md §3).
/// </summary>
internal static class MmprojConverter
{
    /// <summary>Pre-activations at or above this pass ggml's GELU unchanged (it returns x for x >= 10).</summary>
    private const float GeluIdentityThreshold = 10f;

    public static (List<KeyValuePair<string, GgufValue>> Metadata, List<TensorPlan> Tensors) Plan(Checkpoint checkpoint, ImageNormalization normalization, OutputType outputType, string name)
    {
        var vision = checkpoint.Config.Vision;
        int textHidden = checkpoint.Config.Text.HiddenSize;
        var shapes = new ShapeChecker(checkpoint);

        var metadata = new List<KeyValuePair<string, GgufValue>>();
        void Add(string key, GgufValue value) => metadata.Add(new(key, value));
        Add("general.architecture", GgufValue.Of("clip"));
        Add("general.name", GgufValue.Of(name));
        Add("general.file_type", GgufValue.Of((uint)outputType.FileType));
        Add("clip.has_vision_encoder", GgufValue.Of(true));
        Add("clip.projector_type", GgufValue.Of("janus_pro"));
        // SigLIP's MLP uses tanh-GELU; without use_gelu clip builds quick-GELU.
        Add("clip.use_gelu", GgufValue.Of(true));
        Add("clip.vision.image_size", GgufValue.Of((uint)vision.ImageSize));
        Add("clip.vision.patch_size", GgufValue.Of((uint)vision.PatchSize));
        Add("clip.vision.embedding_length", GgufValue.Of((uint)vision.HiddenSize));
        Add("clip.vision.feed_forward_length", GgufValue.Of((uint)vision.IntermediateSize));
        Add("clip.vision.projection_dim", GgufValue.Of((uint)textHidden));
        Add("clip.vision.block_count", GgufValue.Of((uint)vision.LayerCount));
        Add("clip.vision.attention.head_count", GgufValue.Of((uint)vision.HeadCount));
        Add("clip.vision.attention.layer_norm_epsilon", GgufValue.Of((float)vision.LayerNormEps));
        Add("clip.vision.image_mean", GgufValue.Array(normalization.Mean));
        Add("clip.vision.image_std", GgufValue.Array(normalization.Std));

        int d = vision.HiddenSize;
        TensorPlan Planned(string gguf, TensorSource source) => new(gguf, source, TensorType(gguf, source.Dimensions, outputType));
        TensorPlan Weight(string gguf, string hf, params long[] shape) => Planned(gguf, TensorSource.From(shapes.Expect(hf, shape)));
        TensorPlan Vector(string gguf, string hf, long length) => Weight(gguf, hf, length);

        var plans = new List<TensorPlan>
        {
            Weight("v.patch_embd.weight", "vision.embeddings.patch_embedding.weight", d, 3, vision.PatchSize, vision.PatchSize),
            Vector("v.patch_embd.bias", "vision.embeddings.patch_embedding.bias", d),
            Weight("v.position_embd.weight", "vision.embeddings.position_embedding.weight", vision.ImageTokens, d),
        };

        for (int i = 0; i < vision.LayerCount; i++)
        {
            string hf = $"vision.encoder.layers.{i}";
            string blk = $"v.blk.{i}";
            foreach (var (gguf, projection) in new[] { ("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"), ("attn_out", "out_proj") })
            {
                plans.Add(Weight($"{blk}.{gguf}.weight", $"{hf}.self_attn.{projection}.weight", d, d));
                plans.Add(Vector($"{blk}.{gguf}.bias", $"{hf}.self_attn.{projection}.bias", d));
            }

            plans.Add(Vector($"{blk}.ln1.weight", $"{hf}.layer_norm1.weight", d));
            plans.Add(Vector($"{blk}.ln1.bias", $"{hf}.layer_norm1.bias", d));
            plans.Add(Weight($"{blk}.ffn_up.weight", $"{hf}.mlp.fc1.weight", vision.IntermediateSize, d));
            plans.Add(Vector($"{blk}.ffn_up.bias", $"{hf}.mlp.fc1.bias", vision.IntermediateSize));
            plans.Add(Weight($"{blk}.ffn_down.weight", $"{hf}.mlp.fc2.weight", d, vision.IntermediateSize));
            plans.Add(Vector($"{blk}.ffn_down.bias", $"{hf}.mlp.fc2.bias", d));
            plans.Add(Vector($"{blk}.ln2.weight", $"{hf}.layer_norm2.weight", d));
            plans.Add(Vector($"{blk}.ln2.bias", $"{hf}.layer_norm2.bias", d));
        }

        var postNormWeight = shapes.Expect("vision.post_layernorm.weight", d);
        var postNormBias = shapes.Expect("vision.post_layernorm.bias", d);
        plans.Add(Planned("v.post_ln.weight", TensorSource.From(postNormWeight)));
        plans.Add(Planned("v.post_ln.bias", TensorSource.From(postNormBias)));
        plans.AddRange(PlanProjector(shapes, postNormWeight.ReadAll(), postNormBias.ReadAll(), textHidden, d).Select(p => Planned(p.Name, p.Source)));
        return (metadata, plans);
    }

    /// <summary>
    /// The type each mmproj tensor is stored in, for conversion and for re-quantizing an mmproj alike.
    /// Weight matrices take the file's type where their rows are whole blocks (SigLIP So400m's
    /// ffn_down rows are 4304 wide, not a multiple of 32), F16 otherwise; norms, biases, position
    /// embeddings and the projector's identity stay F32.
    /// </summary>
    internal static GgmlType TensorType(string name, long[] dimensions, OutputType outputType) => name switch
    {
        // A convolution: ggml runs it only from F16 or F32 (BF16 aborts the scheduler).
        "v.patch_embd.weight" => outputType.DefaultType == GgmlType.F32 ? GgmlType.F32 : GgmlType.F16,
        "v.position_embd.weight" or "mm.1.weight" => GgmlType.F32,
        _ when dimensions.Length == 2 && name.EndsWith(".weight", StringComparison.Ordinal) =>
            dimensions[0] % outputType.DefaultType.BlockSize() == 0 ? outputType.DefaultType : GgmlType.F16,
        _ => GgmlType.F32,
    };

    /// <summary>
    /// PaliGemma's projector is y = W x + b; clip's janus_pro projector is mm.1(GELU(mm.0 x)).
    /// Make the GELU an exact identity by shifting every pre-activation above ggml's GELU threshold:
    /// mm.0 = W with bias b + c, mm.1 = I with bias -c. The shift c is bounded per row from the
    /// post-LayerNorm affine: LayerNorm's output n has ||n||2 &lt;= sqrt(d), so
    /// |(W (gamma*n + beta))_i| &lt;= ||W_i * gamma||2 sqrt(d) + |W_i . beta|.
    /// The identity and the shift stay F32 (see <see cref="TensorType"/>) so that the round trip
    /// (y + c) - c loses only ~c * 2^-24.
    /// </summary>
    private static IEnumerable<(string Name, TensorSource Source)> PlanProjector(ShapeChecker shapes, float[] gamma, float[] beta, int outputs, int d)
    {
        var weight = shapes.Expect("projector.weight", outputs, d);
        float[] w = weight.ReadAll();
        float[] b = shapes.Expect("projector.bias", outputs).ReadAll();

        var shiftedBias = new float[outputs];
        var negativeShift = new float[outputs];
        double sqrtD = Math.Sqrt(d);
        for (int i = 0; i < outputs; i++)
        {
            double scaledNorm = 0, dotBeta = 0;
            for (int j = 0; j < d; j++)
            {
                double wij = w[(i * d) + j];
                scaledNorm += wij * gamma[j] * wij * gamma[j];
                dotBeta += wij * beta[j];
            }

            float shift = (float)Math.Ceiling((Math.Sqrt(scaledNorm) * sqrtD) + Math.Abs(dotBeta) + Math.Abs(b[i]) + GeluIdentityThreshold + 1);
            shiftedBias[i] = b[i] + shift;
            negativeShift[i] = -shift;
        }

        var identity = new float[outputs * outputs];
        for (int i = 0; i < outputs; i++)
        {
            identity[(i * outputs) + i] = 1f;
        }

        yield return ("mm.0.weight", TensorSource.From(weight));
        yield return ("mm.0.bias", TensorSource.From(shiftedBias, outputs));
        yield return ("mm.1.weight", TensorSource.From(identity, outputs, outputs));
        yield return ("mm.1.bias", TensorSource.From(negativeShift, outputs));
    }
}

/// <summary>The image normalization of preprocessor_config.json (PaliGemma: mean = std = 0.5).</summary>
public sealed record ImageNormalization(float[] Mean, float[] Std)
{
    public static ImageNormalization Default { get; } = new([0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]);

    public static ImageNormalization Load(string directory)
    {
        string path = Path.Combine(directory, "preprocessor_config.json");
        if (!File.Exists(path))
        {
            return Default;
        }

        try
        {
            using var stream = File.OpenRead(path);
            using var document = System.Text.Json.JsonDocument.Parse(stream);
            float[] Read(string key, float[] fallback) =>
                document.RootElement.TryGetProperty(key, out var array) && array.ValueKind == System.Text.Json.JsonValueKind.Array && array.GetArrayLength() == 3
                    ? array.EnumerateArray().Select(v => v.GetSingle()).ToArray()
                    : fallback;
            var result = new ImageNormalization(Read("image_mean", Default.Mean), Read("image_std", Default.Std));
            if (result.Std.Any(s => !(s > 0)) || result.Mean.Any(m => !float.IsFinite(m)))
            {
                throw PaliGemmaException.InFile(path, "image_std must be positive and image_mean finite");
            }

            return result;
        }
        catch (System.Text.Json.JsonException e)
        {
            throw PaliGemmaException.InFile(path, $"invalid JSON: {TensorNames.ForMessage(e.Message)}", e);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw PaliGemmaException.InFile(path, $"unexpected value: {e.Message}", e);
        }
    }
}
