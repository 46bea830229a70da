using System.Buffers.Binary;
using System.Text;
using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Checkpoints;

/// <summary>Broken checkpoints: one clear line naming the file and the problem, and no output at all.</summary>
public sealed class CheckpointErrorTests
{
    public static TheoryData<string> Problems() => new()
    {
        "missing-config", "no-weights", "absent-shard", "header-past-file", "offsets-out-of-range", "overlapping-tensors",
        "byte-count-mismatch", "invalid-header-json", "unsupported-architecture", "unsupported-dtype", "missing-tensor",
        "wrong-shape", "header-over-limit", "index-names-wrong-file",
    };

    [Theory]
    [MemberData(nameof(Problems))]
    public void Conversion_fails_with_a_clear_message_and_writes_nothing(string problem)
    {
        string checkpoint = CheckpointCopier.Copy(GoldenData.Model("tiny-paligemma-224").Directory, TestModels.NewFolder(problem), shards: 2);
        string shard = Path.Combine(checkpoint, "model-00001-of-00002.safetensors");
        var (expectedFile, expectedText) = Break(problem, checkpoint, shard);
        string output = TestModels.NewFolder("out-" + problem);

        var error = Assert.Throws<PaliGemmaException>(() => CheckpointConverter.Convert(checkpoint, new ConversionOptions { OutputDirectory = output }));

        Assert.Contains(expectedText, error.Message, StringComparison.Ordinal);
        Assert.Contains(expectedFile, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
        Assert.Empty(Directory.GetFileSystemEntries(output));
    }

    [Fact]
    public void The_converter_program_reports_one_line_and_exit_code_1()
    {
        string checkpoint = CheckpointCopier.Copy(GoldenData.Model("tiny-paligemma-224").Directory, TestModels.NewFolder("cli-broken"), shards: 2);
        Break("absent-shard", checkpoint, Path.Combine(checkpoint, "model-00001-of-00002.safetensors"));

        var result = CliProcess.Run("paligemma-convert", checkpoint, "--out-dir", TestModels.NewFolder("cli-out"));

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("absent from the folder", result.SingleErrorLine(), StringComparison.Ordinal);
    }

    private static (string File, string Text) Break(string problem, string checkpoint, string shard)
    {
        string config = Path.Combine(checkpoint, "config.json");
        string index = Path.Combine(checkpoint, Checkpoint.IndexFileName);
        switch (problem)
        {
            case "missing-config":
                File.Delete(config);
                return ("config.json", "not found");
            case "no-weights":
                File.Delete(index);
                foreach (string file in Directory.GetFiles(checkpoint, "*.safetensors"))
                {
                    File.Delete(file);
                }

                return (checkpoint, "no weights");
            case "absent-shard":
                File.Delete(shard);
                return ("model.safetensors.index.json", "absent from the folder");
            case "header-past-file":
                using (var stream = new FileStream(shard, FileMode.Open))
                {
                    stream.SetLength(stream.Length / 2);
                }

                return (shard, "truncated");
            case "offsets-out-of-range":
                WriteSafetensors(shard, """{"language_model.model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}""", 16);
                return (shard, "data ends at byte 256");
            case "overlapping-tensors":
                WriteSafetensors(shard, """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""", 24);
                return (shard, "overlap");
            case "byte-count-mismatch":
                WriteSafetensors(shard, """{"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}}""", 16);
                return (shard, "needs 8 bytes but data_offsets span 16");
            case "invalid-header-json":
                WriteSafetensors(shard, """{"a":{"dtype":"F32","shape":[4],""", 16);
                return (shard, "not valid JSON");
            case "header-over-limit":
                var bytes = File.ReadAllBytes(shard);
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, 200_000_000);
                File.WriteAllBytes(shard, bytes);
                return (shard, "above the format's limit");
            case "unsupported-architecture":
                File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"paligemma\"", "\"model_type\": \"llava\"", StringComparison.Ordinal));
                return ("config.json", "unsupported model_type 'llava'");
            case "unsupported-dtype":
                RewriteShard(checkpoint, name => name.Contains("norm.weight", StringComparison.Ordinal) ? TensorDType.I32 : TensorDType.F32);
                return (checkpoint, "dtype I32");
            case "missing-tensor":
                RewriteShard(checkpoint, name => name == "language_model.model.layers.1.mlp.up_proj.weight" ? null : TensorDType.F32);
                return ("text.layers.1.mlp.up_proj.weight", "missing from the checkpoint");
            case "wrong-shape":
                File.WriteAllText(config, File.ReadAllText(config).Replace("\"intermediate_size\": 160", "\"intermediate_size\": 128", StringComparison.Ordinal));
                return ("gate_proj", "config.json implies [128, 64]");
            default:
                File.WriteAllText(index, File.ReadAllText(index).Replace("model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors", StringComparison.Ordinal));
                return ("model.safetensors.index.json", "does not hold it");
        }
    }

    private static void WriteSafetensors(string path, string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Rewrites the checkpoint as one file, with the dtype each tensor should claim (null: drop it).</summary>
    private static void RewriteShard(string checkpoint, Func<string, TensorDType?> dtype)
    {
        var tensors = CheckpointCopier.ReadAll(checkpoint);
        foreach (string file in Directory.GetFiles(checkpoint, "*.safetensors").Append(Path.Combine(checkpoint, Checkpoint.IndexFileName)))
        {
            File.Delete(file);
        }

        using var stream = File.Create(Path.Combine(checkpoint, "model.safetensors"));
        using var writer = new SafetensorsWriter(stream);
        var kept = tensors.Where(t => dtype(t.Name) is not null).ToList();
        foreach (var t in kept)
        {
            writer.AddTensor(t.Name, dtype(t.Name)!.Value, t.Shape);
        }

        writer.WriteHeader();
        foreach (var t in kept)
        {
            writer.WriteData(new byte[t.Values.Length * 4]);
        }
    }
}
