using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Conversion;

public sealed class ConversionTests(ITestOutputHelper output)
{
    /// <summary>
    /// ggml's GELU is an F16 lookup table and the patch convolution runs in F16: docs/DESIGN.md §7 expects
    /// ~1e-2 absolute on values up to ~10 for an F32 mmproj.
    /// </summary>
    private const double ProjectorTolerance = 1e-2;

    public static TheoryData<string> ModelNames() => new(GoldenData.Models.Select(m => m.Name));

    public static TheoryData<string> CaseKeys() => new(GoldenData.Cases.Select(c => c.Key));

    [Theory]
    [MemberData(nameof(CaseKeys))]
    public void Mmproj_image_embeddings_match_the_reference_projector_output(string key)
    {
        var golden = GoldenData.Case(key);
        var model = TestModels.Load(golden.Model);
        float[] pixels = GoldenData.Tensor($"pixel_values/{golden.Image}/{model.ImageSize}");
        float[] reference = GoldenData.Tensor($"{key}/projector_out");

        float[] ours = model.OnModelThread(() => model.EncodeImage(FromPixelValues(pixels, model.ImageSize)));

        Assert.Equal(reference.Length, ours.Length);
        double worst = ours.Zip(reference, (a, b) => Math.Abs(a - b)).Max();
        double largest = reference.Max(Math.Abs);
        output.WriteLine($"{key}: max |Δ| = {worst:E3} on values up to {largest:F2} (tolerance {ProjectorTolerance})");
        Assert.InRange(worst, 0, ProjectorTolerance);
    }

    [Theory]
    [MemberData(nameof(ModelNames))]
    public void Text_model_metadata_follows_llama_cpp(string name)
    {
        var golden = GoldenData.Model(name);
        var gguf = GgufFile.Open(TestModels.Converted(name).TextModelPath);
        string arch = golden.TextModelType;

        Assert.Equal(arch, gguf.Architecture);
        Assert.Equal(3u, gguf.Version);
        Assert.Equal(golden.VocabSize, gguf.Metadata["tokenizer.ggml.tokens"].ArrayLength);
        Assert.Equal(new long[] { 64, golden.VocabSize }, gguf.FindTensor("token_embd.weight")!.Dimensions);
        Assert.Null(gguf.FindTensor("output.weight"));
        Assert.Equal("<image>", ((string[])gguf.Metadata["tokenizer.ggml.tokens"].Value)[golden.ImageTokenId]);
        Assert.All(gguf.Tensors.Where(t => t.Name.EndsWith("norm.weight", StringComparison.Ordinal)), t => Assert.Equal(GgmlType.F32, t.Type));
        if (golden.IsGemma2)
        {
            Assert.Equal(30.0, gguf.GetFloat("gemma2.final_logit_softcapping"));
            Assert.Equal(50.0, gguf.GetFloat("gemma2.attn_logit_softcapping"));
            Assert.NotNull(gguf.FindTensor("blk.0.post_ffw_norm.weight"));
        }
    }

    [Fact]
    public void Norms_are_written_plus_one_and_gemma2_queries_carry_the_pre_attention_scalar()
    {
        var golden = GoldenData.Model("tiny-paligemma2-224");
        var gguf = GgufFile.Open(TestModels.Converted(golden.Name).TextModelPath);
        using var checkpoint = Checkpoint.Open(golden.Directory);

        float[] norm = checkpoint.Get("text.layers.0.input_layernorm.weight").ReadAll();
        float[] written = ReadF32(gguf, "blk.0.attn_norm.weight");
        Assert.Equal(norm.Select(w => w + 1f), written);

        // head_dim 16, query_pre_attn_scalar 24: llama.cpp divides by sqrt(16), the reference by sqrt(24).
        float[] q = checkpoint.Get("text.layers.0.self_attn.q_proj.weight").ReadAll();
        float[] writtenQ = ReadF32(gguf, "blk.0.attn_q.weight");
        float scale = MathF.Sqrt(16f / 24f);
        Assert.Equal(q.Select(v => v * scale), writtenQ, (a, b) => Math.Abs(a - b) <= 1e-7f);
    }

    [Fact]
    public void Renamed_resharded_and_f16_checkpoints_convert_to_the_same_files()
    {
        var golden = GoldenData.Model("tiny-paligemma-224");
        var reference = Convert(golden.Directory, "reference", OutputType.F32);

        // transformers >= 4.52: model.language_model.*, model.vision_tower.vision_model.*, model.multi_modal_projector.linear.*
        static string Modern(string name) => name
            .Replace("language_model.model.", "model.language_model.", StringComparison.Ordinal)
            .Replace("vision_tower.", "model.vision_tower.vision_model.", StringComparison.Ordinal)
            .Replace("multi_modal_projector.", "model.multi_modal_projector.", StringComparison.Ordinal);
        string renamed = CheckpointCopier.Copy(golden.Directory, TestModels.NewFolder("renamed"), shards: 3, rename: Modern);
        var fromRenamed = Convert(renamed, "renamed", OutputType.F32);

        Assert.Equal(File.ReadAllBytes(reference.TextModelPath), File.ReadAllBytes(fromRenamed.TextModelPath));
        Assert.Equal(File.ReadAllBytes(reference.MmprojPath), File.ReadAllBytes(fromRenamed.MmprojPath));

        // F16 storage: weight matrices rounded once give identical F16 bytes; the F32 norms (w + 1) differ
        // only by the F16 rounding of w.
        string f16 = CheckpointCopier.Copy(golden.Directory, TestModels.NewFolder("f16"), shards: 1, dtype: TensorDType.F16);
        var fromF32 = GgufFile.Open(Convert(golden.Directory, "f32-to-f16", OutputType.F16).TextModelPath);
        var fromF16 = GgufFile.Open(Convert(f16, "f16-to-f16", OutputType.F16).TextModelPath);
        Assert.Equal(fromF32.Tensors.Select(t => (t.Name, t.Type)), fromF16.Tensors.Select(t => (t.Name, t.Type)));
        foreach (var tensor in fromF32.Tensors)
        {
            byte[] a = new byte[tensor.ByteCount], b = new byte[tensor.ByteCount];
            fromF32.ReadTensorBytes(tensor, 0, a);
            fromF16.ReadTensorBytes(fromF16.FindTensor(tensor.Name)!, 0, b);
            if (tensor.Type == GgmlType.F16)
            {
                Assert.Equal(a, b);
            }
            else
            {
                var x = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(a).ToArray();
                var y = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(b).ToArray();
                Assert.All(x.Zip(y), p => Assert.InRange(Math.Abs(p.First - p.Second), 0, 1e-3 * Math.Max(1, Math.Abs(p.First))));
            }
        }
    }

    [Theory]
    [InlineData("f32", GgmlType.F32)]
    [InlineData("f16", GgmlType.F16)]
    [InlineData("bf16", GgmlType.BF16)]
    public void Outtype_sets_the_weight_type_and_file_name(string outtype, GgmlType expected)
    {
        var golden = GoldenData.Model("tiny-paligemma2-224");
        var type = OutputType.Parse(outtype, OutputType.TextTypes, "--outtype");
        var result = Convert(golden.Directory, "outtype-" + outtype, type);

        Assert.EndsWith($".{outtype}.gguf", result.TextModelPath, StringComparison.Ordinal);
        var gguf = GgufFile.Open(result.TextModelPath);
        Assert.Equal(expected, gguf.FindTensor("blk.0.ffn_up.weight")!.Type);
        Assert.Equal(expected, gguf.FindTensor("token_embd.weight")!.Type);
        Assert.Equal(GgmlType.F32, gguf.FindTensor("output_norm.weight")!.Type);
    }

    [Fact]
    public void Mmproj_f16_keeps_the_projector_identity_and_embeddings_in_f32()
    {
        var result = TestModels.Converted("tiny-paligemma-224", OutputType.F16, OutputType.F16);
        var gguf = GgufFile.Open(result.MmprojPath);

        Assert.Equal(GgmlType.F16, gguf.FindTensor("v.blk.0.ffn_up.weight")!.Type);
        Assert.Equal(GgmlType.F16, gguf.FindTensor("v.patch_embd.weight")!.Type);
        Assert.Equal(GgmlType.F32, gguf.FindTensor("v.position_embd.weight")!.Type);
        Assert.Equal(GgmlType.F32, gguf.FindTensor("mm.1.weight")!.Type);
        Assert.Equal("janus_pro", gguf.GetString("clip.projector_type"));
        Assert.True((bool)gguf.Metadata["clip.use_gelu"].Value);
    }

    private static ConversionResult Convert(string directory, string name, OutputType type) =>
        CheckpointConverter.Convert(directory, new ConversionOptions { OutputDirectory = TestModels.NewFolder(name), Name = "same", TextType = type, MmprojType = OutputType.F32 });

    private static float[] ReadF32(GgufFile gguf, string name)
    {
        var tensor = gguf.FindTensor(name)!;
        var bytes = new byte[tensor.ByteCount];
        gguf.ReadTensorBytes(tensor, 0, bytes);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    /// <summary>The reference's pixel values came from uint8 pixels: recover them exactly.</summary>
    private static PreparedImage FromPixelValues(float[] planar, int size)
    {
        var rgb = new byte[size * size * 3];
        for (int c = 0; c < 3; c++)
        {
            for (int i = 0; i < size * size; i++)
            {
                rgb[(i * 3) + c] = (byte)Math.Clamp(Math.Round(((planar[(c * size * size) + i] * 0.5) + 0.5) * 255), 0, 255);
            }
        }

        return new PreparedImage(size, rgb, size, size);
    }
}
