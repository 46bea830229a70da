using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Gguf;

public sealed class GgufTests
{
    [Fact]
    public void Writer_and_reader_round_trip_metadata_and_aligned_tensors()
    {
        string path = Path.Combine(TestModels.NewFolder("gguf"), "t.gguf");
        using (var stream = File.Create(path))
        using (var writer = new GgufWriter(stream))
        {
            writer.AddMetadata("general.architecture", GgufValue.Of("gemma"));
            writer.AddMetadata("a.u32", GgufValue.Of(7u));
            writer.AddMetadata("a.f32", GgufValue.Of(0.5f));
            writer.AddMetadata("a.bool", GgufValue.Of(true));
            writer.AddMetadata("a.strings", GgufValue.Array(["x", "ÿ", ""]));
            writer.AddMetadata("a.ints", GgufValue.Array([1, -2, 3]));
            writer.AddTensor("odd", GgmlType.F32, [3]);
            writer.AddTensor("matrix", GgmlType.F16, [4, 2]);
            writer.WriteHeader();
            writer.WriteTensorData(new byte[12]);
            writer.WriteTensorData(Enumerable.Range(0, 16).Select(i => (byte)i).ToArray());
            writer.Finish();
        }

        var file = GgufFile.Open(path);

        Assert.Equal(3u, file.Version);
        Assert.Equal("gemma", file.Architecture);
        Assert.Equal(7, file.GetInteger("a.u32"));
        Assert.Equal(0.5, file.GetFloat("a.f32"));
        Assert.Equal(true, file.Metadata["a.bool"].Value);
        Assert.Equal(new[] { "x", "ÿ", "" }, (string[])file.Metadata["a.strings"].Value);
        Assert.Equal(new[] { 1, -2, 3 }, (int[])file.Metadata["a.ints"].Value);
        Assert.Equal(0, file.DataOffset % 32);
        var matrix = file.FindTensor("matrix")!;
        Assert.Equal(32, matrix.Offset); // 12 bytes of "odd", padded to the alignment
        var bytes = new byte[16];
        file.ReadTensorBytes(matrix, 0, bytes);
        Assert.Equal(Enumerable.Range(0, 16).Select(i => (byte)i), bytes);
    }

    [Fact]
    public void Writer_refuses_incomplete_tensor_data()
    {
        using var stream = new MemoryStream();
        using var writer = new GgufWriter(stream);
        writer.AddTensor("t", GgmlType.F32, [4]);
        writer.WriteHeader();
        writer.WriteTensorData(new byte[8]);

        Assert.Throws<InvalidOperationException>(writer.Finish);
        Assert.Throws<InvalidOperationException>(() => writer.WriteTensorData(new byte[16]));
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.MXFP4)]
    public void Block_layouts_agree_with_ggml(GgmlType type)
    {
        var (blockSize, typeSize) = GgmlNative.Layout(type);

        Assert.Equal(blockSize, type.BlockSize());
        Assert.Equal(typeSize, type.BlockBytes());
    }

    [Fact]
    public void Inspect_prints_metadata_and_the_tensor_table()
    {
        var files = TestModels.Converted("tiny-paligemma2-224");

        var result = CliProcess.Run("paligemma", "inspect", files.MmprojPath);

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("clip.projector_type = \"janus_pro\"", result.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("v.patch_embd.weight", result.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("57 tensors", result.StandardOutput, StringComparison.Ordinal);
    }
}
