using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Conversion;

public sealed class QuantizationTests
{
    /// <summary>
    /// Every quantized type on Gemma and Gemma 2 at 256-wide rows, on the 64-wide golden PaliGemma 2,
    /// and on the trained tiny model (128-wide rows, 512-wide ffn_down rows, 3 layers) of README's task-accuracy table.
    /// </summary>
    public static TheoryData<string, string> QuantizedTextTypes()
    {
        var data = new TheoryData<string, string>();
        foreach (string checkpoint in new[] { "wide-gemma", "wide-gemma2", "tiny-paligemma2-224", "trained" })
        {
            foreach (var type in OutputType.TextTypes.Where(t => t.IsQuantized))
            {
                data.Add(checkpoint, type.Name);
            }
        }

        return data;
    }

    /// <summary>
    /// The one-pass streaming quantizer must reach the very file llama.cpp's quantizer makes from the
    /// F32 GGUF: the same type for every tensor and, since both quantize the same F32 values with
    /// ggml_quantize_chunk, the same bytes. On 256-wide rows so that K-quant mixes apply, for Gemma and
    /// Gemma 2 (whose attn_q carries the folded query_pre_attn_scalar), and on the 64-wide golden
    /// PaliGemma 2, where llama.cpp falls back to 32-blocks (Q4_K -> Q5_0, ...) and its 26 layers
    /// decide which get more bits; on the trained tiny model, whose 128-wide rows fall back the same
    /// way while its 512-wide ffn_down rows keep K blocks.
    /// </summary>
    [Theory]
    [MemberData(nameof(QuantizedTextTypes))]
    public void Streaming_quantization_matches_llama_model_quantize(string checkpointName, string typeName)
    {
        var type = OutputType.Parse(typeName, OutputType.TextTypes, "--outtype");
        string checkpoint = checkpointName switch
        {
            "wide-gemma" => SyntheticCheckpoint.WideGemma,
            "wide-gemma2" => SyntheticCheckpoint.WideGemma2,
            "trained" => TrainedEval.ModelDirectory,
            _ => GoldenData.Model(checkpointName).Directory,
        };
        var f32 = CheckpointConverter.Convert(checkpoint, new ConversionOptions { OutputDirectory = TestModels.NewFolder("f32"), TextType = OutputType.F32, MmprojType = OutputType.F32 });
        var streamed = CheckpointConverter.Convert(checkpoint, new ConversionOptions { OutputDirectory = TestModels.NewFolder(typeName), TextType = type, MmprojType = OutputType.F32 });
        string native = Path.Combine(TestModels.NewFolder("native-" + typeName), "native.gguf");

        GgufQuantizer.Quantize(f32.TextModelPath, native, typeName);

        var ours = GgufFile.Open(streamed.TextModelPath);
        var theirs = GgufFile.Open(native);
        Assert.Equal(checkpointName.Contains("gemma2", StringComparison.Ordinal) ? "gemma2" : "gemma", ours.Architecture);
        Assert.Equal(theirs.Tensors.Select(t => t.Name).Order(), ours.Tensors.Select(t => t.Name).Order());
        foreach (var tensor in theirs.Tensors)
        {
            var mine = ours.FindTensor(tensor.Name)!;
            Assert.True(tensor.Type == mine.Type, $"{checkpointName} {typeName}: {tensor.Name} is {mine.Type} here but {tensor.Type} from llama_model_quantize");
            byte[] a = new byte[tensor.ByteCount], b = new byte[mine.ByteCount];
            theirs.ReadTensorBytes(tensor, 0, a);
            ours.ReadTensorBytes(mine, 0, b);
            Assert.True(a.AsSpan().SequenceEqual(b), $"{checkpointName} {typeName}: {tensor.Name} bytes differ");
        }

        Assert.Equal(theirs.GetInteger("general.file_type"), ours.GetInteger("general.file_type"));
    }

    [Fact]
    public void K_quant_mix_raises_the_layers_llama_cpp_raises()
    {
        var result = CheckpointConverter.Convert(SyntheticCheckpoint.WideGemma, new ConversionOptions { OutputDirectory = TestModels.NewFolder("q4km"), TextType = OutputType.Q4_K_M, MmprojType = OutputType.Q8_0 });
        var gguf = GgufFile.Open(result.TextModelPath);

        // 8 layers: use_more_bits(i, 8) holds for i in {0, 3, 6, 7}.
        var raised = Enumerable.Range(0, 8).Where(i => gguf.FindTensor($"blk.{i}.attn_v.weight")!.Type == GgmlType.Q6_K).ToArray();
        Assert.Equal(new[] { 0, 3, 6, 7 }, raised);
        Assert.Equal(GgmlType.Q6_K, gguf.FindTensor("token_embd.weight")!.Type);
        Assert.Equal(GgmlType.Q4_K, gguf.FindTensor("blk.1.ffn_up.weight")!.Type);
        Assert.Equal(GgmlType.F32, gguf.FindTensor("blk.1.ffn_norm.weight")!.Type);

        var mmproj = GgufFile.Open(result.MmprojPath);
        Assert.Equal(GgmlType.Q8_0, mmproj.FindTensor("v.blk.0.attn_q.weight")!.Type);
        Assert.Equal(GgmlType.F16, mmproj.FindTensor("v.blk.0.ffn_down.weight")!.Type); // 112-wide rows: not whole Q8_0 blocks
        Assert.Equal(GgmlType.F32, mmproj.FindTensor("mm.1.weight")!.Type);
        Assert.Equal(GgmlType.F16, mmproj.FindTensor("v.patch_embd.weight")!.Type);
    }

    [Fact]
    public void Quantize_command_requantizes_an_mmproj_to_the_bytes_of_the_direct_conversion()
    {
        var f16 = TestModels.Converted("tiny-paligemma-224", OutputType.F32, OutputType.F32);
        string output = Path.Combine(TestModels.NewFolder("mmproj-q8"), "mmproj.q8_0.gguf");

        GgufQuantizer.Quantize(f16.MmprojPath, output, "q8_0");

        // llama_model_quantize cannot read a clip file, so the yardstick is the direct conversion,
        // whose bytes the text-model test above ties to llama.cpp's quantizer: both quantize the same
        // F32 values, so every tensor must come out byte for byte the same, and so must the metadata.
        var direct = GgufFile.Open(TestModels.Converted("tiny-paligemma-224", OutputType.F32, OutputType.Q8_0).MmprojPath);
        var requantized = GgufFile.Open(output);
        Assert.Equal(direct.Tensors.Select(t => (t.Name, t.Type, string.Join('x', t.Dimensions))), requantized.Tensors.Select(t => (t.Name, t.Type, string.Join('x', t.Dimensions))));
        foreach (var tensor in direct.Tensors)
        {
            var other = requantized.FindTensor(tensor.Name)!;
            byte[] a = new byte[tensor.ByteCount], b = new byte[other.ByteCount];
            direct.ReadTensorBytes(tensor, 0, a);
            requantized.ReadTensorBytes(other, 0, b);
            Assert.True(a.AsSpan().SequenceEqual(b), $"{tensor.Name} ({tensor.Type}) bytes differ");
        }

        // The same keys and values; their order in the file carries no meaning.
        IEnumerable<(string, string)> Metadata(GgufFile file) => file.MetadataList.Select(m => (m.Key, Describe(m.Value))).Order();
        Assert.Equal(Metadata(direct), Metadata(requantized));
        Assert.Equal(7, requantized.GetInteger("general.file_type"));
    }

    private static string Describe(GgufValue value) => $"{value.Type}:{(value.Value is System.Collections.IEnumerable items and not string ? string.Join(',', items.Cast<object>()) : value.Value)}";

    [Theory]
    [InlineData("q9_9", "unknown")]
    [InlineData("iq2_xxs", "importance matrix")]
    [InlineData("q3_k_m", "does not reproduce")]
    public void Bad_type_names_explain_themselves(string typeName, string expected)
    {
        var error = Assert.Throws<PaliGemmaException>(() => OutputType.Parse(typeName, OutputType.TextTypes, "--outtype"));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Contains("q4_k_m", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_mmproj_cannot_take_a_k_quant_and_nothing_is_written()
    {
        var files = TestModels.Converted("tiny-paligemma-224");
        string folder = TestModels.NewFolder("mmproj-k");
        string output = Path.Combine(folder, "out.gguf");

        var error = Assert.Throws<PaliGemmaException>(() => GgufQuantizer.Quantize(files.MmprojPath, output, "q4_k_m"));

        Assert.Contains("1152", error.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }
}
