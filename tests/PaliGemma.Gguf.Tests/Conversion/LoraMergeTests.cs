using System.Runtime.InteropServices;
using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Conversion;

/// <summary>
/// <c>paligemma-convert BASE --lora ADAPTER</c> on an adapter written here for the golden
/// PaliGemma checkpoint (text attention and MLP, a vision attention projection, the projector):
/// every merged weight equals W + scale * B A computed here independently (plain and rsLoRA
/// scaling), the rest is untouched, and the merged model's logits match those of a checkpoint into
/// which the test baked the update itself, and differ from the base's.
/// </summary>
public sealed class LoraMergeTests(ITestOutputHelper output)
{
    private const string Model = "tiny-paligemma-224";
    private const int Rank = 4;
    private const double Alpha = 8;

    /// <summary>Adapted modules and the GGUF tensors they become.</summary>
    private static readonly (string Module, string Gguf, bool Mmproj)[] Targets =
    [
        ("language_model.model.layers.0.self_attn.q_proj", "blk.0.attn_q.weight", false),
        ("language_model.model.layers.0.self_attn.v_proj", "blk.0.attn_v.weight", false),
        ("language_model.model.layers.1.mlp.down_proj", "blk.1.ffn_down.weight", false),
        ("vision_tower.encoder.layers.0.self_attn.v_proj", "v.blk.0.attn_v.weight", true),
        ("vision_tower.encoder.layers.1.mlp.fc1", "v.blk.1.ffn_up.weight", true),
        ("multi_modal_projector.linear", "mm.0.weight", true),
    ];

    private static string BaseDirectory => GoldenData.Model(Model).Directory;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Merged_weights_are_W_plus_scale_BA_and_the_rest_is_untouched(bool rsLora)
    {
        var modules = LoraAdapterWriter.RandomFactors(BaseDirectory, Targets.Select(t => t.Module), Rank);
        string adapter = LoraAdapterWriter.Write(TestModels.NewFolder("lora"), modules, Rank, Alpha, new() { ["use_rslora"] = rsLora });
        double scale = rsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

        var merged = CheckpointConverter.Convert(BaseDirectory, new ConversionOptions { OutputDirectory = TestModels.NewFolder("lora-out"), TextType = OutputType.F32, MmprojType = OutputType.F32, LoraAdapterDirectory = adapter });
        var baseline = TestModels.Converted(Model);
        var weights = CheckpointCopier.ReadAll(BaseDirectory).ToDictionary(t => t.Name, t => t.Values);

        foreach (var ((module, gguf, mmproj), factors) in Targets.Zip(modules))
        {
            float[] expected = LoraAdapterWriter.Merged(weights[module + ".weight"], factors, scale);
            float[] actual = ReadF32(mmproj ? merged.MmprojPath : merged.TextModelPath, gguf);
            float[] before = ReadF32(mmproj ? baseline.MmprojPath : baseline.TextModelPath, gguf);
            double error = expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second));
            double change = before.Zip(actual).Max(p => Math.Abs(p.First - p.Second));
            output.WriteLine($"{gguf}: max |merged - (W + {scale:G3} BA)| = {error:E2}, max |merged - W| = {change:F3}");
            Assert.True(error < 1e-5, $"{gguf}: {error}");
            Assert.True(change > 0.05, $"{gguf}: the update changed it by only {change}");
        }

        foreach (var (path, basePath) in new[] { (merged.TextModelPath, baseline.TextModelPath), (merged.MmprojPath, baseline.MmprojPath) })
        {
            var file = GgufFile.Open(path);
            foreach (var tensor in file.Tensors.Where(t => !Targets.Any(target => target.Gguf == t.Name) && t.Name is not ("mm.0.bias" or "mm.1.bias")))
            {
                Assert.True(ReadF32(basePath, tensor.Name).SequenceEqual(ReadF32(path, tensor.Name)), $"{tensor.Name} changed though the adapter does not touch it");
            }
        }
    }

    [Fact]
    public void The_merged_model_computes_what_a_checkpoint_with_the_update_baked_in_computes()
    {
        var modules = LoraAdapterWriter.RandomFactors(BaseDirectory, Targets.Select(t => t.Module), Rank, magnitude: 0.4f);
        string adapter = LoraAdapterWriter.Write(TestModels.NewFolder("lora"), modules, Rank, Alpha);
        var merged = CheckpointConverter.Convert(BaseDirectory, new ConversionOptions { OutputDirectory = TestModels.NewFolder("lora-out"), TextType = OutputType.F32, MmprojType = OutputType.F32, LoraAdapterDirectory = adapter });

        // The test bakes the update into a copy of the safetensors itself.
        var byModule = Targets.Zip(modules).ToDictionary(p => p.First.Module + ".weight", p => p.Second);
        string baked = Path.Combine(TestModels.NewFolder("baked"), Model);
        Bake(BaseDirectory, baked, (name, values) => byModule.TryGetValue(name, out var m) ? LoraAdapterWriter.Merged(values, m, Alpha / Rank) : values);
        var bakedFiles = CheckpointConverter.Convert(baked, new ConversionOptions { OutputDirectory = TestModels.NewFolder("baked-out"), TextType = OutputType.F32, MmprojType = OutputType.F32 });

        var golden = GoldenData.Case($"{Model}/chelsea/caption_en");
        var options = new ModelOptions { Precision = Precision.Exact, Threads = Environment.ProcessorCount };
        using var mergedModel = PaliGemmaModel.Load(merged.TextModelPath, merged.MmprojPath, options);
        using var bakedModel = PaliGemmaModel.Load(bakedFiles.TextModelPath, bakedFiles.MmprojPath, options);
        var mergedLogits = TeacherForcing.Logits(mergedModel, golden);
        var bakedLogits = TeacherForcing.Logits(bakedModel, golden);
        var baseLogits = TeacherForcing.Logits(TestModels.Load(Model), golden);

        double toBaked = MaxDifference(mergedLogits, bakedLogits);
        double toBase = MaxDifference(mergedLogits, baseLogits);
        output.WriteLine($"{golden.Key}, {TeacherForcing.Steps} steps: max |Δlogit| merged vs baked {toBaked:E2}, merged vs base {toBase:F3}");
        Assert.True(toBaked < 1e-3, $"merged vs baked: {toBaked}");
        Assert.True(toBase > 0.1, $"the adapter changed the logits by only {toBase}");
    }

    [Fact]
    public void Adapters_saved_with_either_transformers_naming_merge_alike()
    {
        // transformers 4.52 and later name the modules model.language_model.*, model.vision_tower.*,
        // model.multi_modal_projector.*; adapters trained there must merge into checkpoints saved before.
        var modules = LoraAdapterWriter.RandomFactors(BaseDirectory, Targets.Select(t => t.Module), Rank);
        var renamed = modules.Select(m => m with
        {
            Name = m.Name.Replace("language_model.model.", "model.language_model.", StringComparison.Ordinal)
                .Replace("vision_tower.", "model.vision_tower.", StringComparison.Ordinal)
                .Replace("multi_modal_projector.", "model.multi_modal_projector.", StringComparison.Ordinal),
        }).ToList();
        Assert.All(renamed, m => Assert.StartsWith("model.", m.Name, StringComparison.Ordinal));

        var options = new ConversionOptions { TextType = OutputType.F32, MmprojType = OutputType.F32, Name = "same" };
        var old = CheckpointConverter.Convert(BaseDirectory, options with { OutputDirectory = TestModels.NewFolder("lora-old"), LoraAdapterDirectory = LoraAdapterWriter.Write(TestModels.NewFolder("lora"), modules, Rank, Alpha) });
        var current = CheckpointConverter.Convert(BaseDirectory, options with { OutputDirectory = TestModels.NewFolder("lora-new"), LoraAdapterDirectory = LoraAdapterWriter.Write(TestModels.NewFolder("lora"), renamed, Rank, Alpha) });

        Assert.Equal(File.ReadAllBytes(old.TextModelPath), File.ReadAllBytes(current.TextModelPath));
        Assert.Equal(File.ReadAllBytes(old.MmprojPath), File.ReadAllBytes(current.MmprojPath));
    }

    public static TheoryData<string> Refusals =>
    [
        "dora", "bias", "modules_to_save", "untargeted", "unknown-module", "shape", "magnitude-vector", "embedding", "rank", "half-pair",
    ];

    [Theory]
    [MemberData(nameof(Refusals))]
    public void What_cannot_be_merged_exactly_is_refused_with_the_reason(string problem)
    {
        var modules = LoraAdapterWriter.RandomFactors(BaseDirectory, ["language_model.model.layers.0.self_attn.q_proj"], Rank);
        var q = modules[0];
        string folder = TestModels.NewFolder($"lora-{problem}");
        (string Key, long[] Shape)[] none = [];
        string expected = problem switch
        {
            "dora" => Write(folder, modules, new() { ["use_dora"] = true }, none, "use_dora is true: DoRA"),
            "bias" => Write(folder, modules, new() { ["bias"] = "all" }, none, "bias is \"all\""),
            "modules_to_save" => Write(folder, modules, new() { ["modules_to_save"] = new[] { "lm_head" } }, none, "modules_to_save is set"),
            "untargeted" => Write(folder, modules, new() { ["target_modules"] = new[] { "k_proj" } }, none, "is not among the adapter's target_modules"),
            "unknown-module" => Write(folder, [q with { Name = "language_model.model.layers.99.self_attn.q_proj" }], null, none, "which the base checkpoint has no weight for"),
            "shape" => Write(folder, [q with { Inputs = q.Inputs / 2, A = q.A[..(q.A.Length / 2)] }], null, none, "but the base weight is"),
            "magnitude-vector" => Write(folder, modules, null, [("base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", [q.Outputs])], "DoRA magnitude vector"),
            "embedding" => Write(folder, modules, null, [("base_model.model.language_model.model.embed_tokens.lora_embedding_A", [Rank, 8])], "is an adapted embedding"),
            "rank" => Write(folder, modules, new() { ["r"] = 8 }, none, "has rank 4 but adapter_config.json says r = 8"),
            _ => Write(folder, modules, null, [("base_model.model.language_model.model.layers.0.self_attn.k_proj.lora_A.weight", [Rank, q.Inputs])], "has lora_A without lora_B"),
        };

        string outputFolder = TestModels.NewFolder("lora-refused");
        var error = Assert.Throws<PaliGemmaException>(() => CheckpointConverter.Convert(BaseDirectory, new ConversionOptions { OutputDirectory = outputFolder, LoraAdapterDirectory = folder }));
        output.WriteLine(error.Message);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(outputFolder));
    }

    [Fact]
    public void A_regex_target_and_another_declared_base_merge_with_a_warning()
    {
        var modules = LoraAdapterWriter.RandomFactors(BaseDirectory, ["language_model.model.layers.0.self_attn.q_proj", "language_model.model.layers.1.self_attn.q_proj"], Rank);
        string adapter = LoraAdapterWriter.Write(TestModels.NewFolder("lora-regex"), modules, Rank, Alpha, new()
        {
            ["target_modules"] = @".*language_model.*\.(q_proj|v_proj)",
            ["base_model_name_or_path"] = "someone/another-model",
        });
        var warnings = new List<string>();
        var result = CheckpointConverter.Convert(BaseDirectory, new ConversionOptions { OutputDirectory = TestModels.NewFolder("lora-regex-out"), LoraAdapterDirectory = adapter, Warning = warnings.Add });

        Assert.Equal("tiny-paligemma-224-" + Path.GetFileName(adapter) + ".f16.gguf", Path.GetFileName(result.TextModelPath));
        Assert.Contains("trained on 'someone/another-model'", Assert.Single(warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void The_convert_program_merges_with_lora_and_refuses_in_one_line()
    {
        var modules = LoraAdapterWriter.RandomFactors(BaseDirectory, ["language_model.model.layers.0.self_attn.q_proj"], Rank);
        string adapter = LoraAdapterWriter.Write(TestModels.NewFolder("lora-cli"), modules, Rank, Alpha);
        string outputFolder = TestModels.NewFolder("lora-cli-out");

        var merged = CliProcess.Run("paligemma-convert", BaseDirectory, "--lora", adapter, "--out-dir", outputFolder);
        Assert.True(merged.ExitCode == 0, merged.StandardError);
        Assert.Equal(2, merged.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        LoraAdapterWriter.Write(adapter, modules, Rank, Alpha, new() { ["use_dora"] = true });
        var refused = CliProcess.Run("paligemma-convert", BaseDirectory, "--lora", adapter, "--out-dir", outputFolder, "--force");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("use_dora is true", refused.SingleErrorLine(), StringComparison.Ordinal);
    }

    private static string Write(string folder, IReadOnlyList<LoraAdapterWriter.Module> modules, Dictionary<string, object>? config, (string Key, long[] Shape)[] extra, string expected)
    {
        LoraAdapterWriter.Write(folder, modules, Rank, Alpha, config, extra);
        return expected;
    }

    /// <summary>A copy of a checkpoint (one F32 model.safetensors) with some tensors' values replaced.</summary>
    internal static void Bake(string source, string destination, Func<string, float[], float[]> values)
    {
        Directory.CreateDirectory(destination);
        foreach (string file in Directory.GetFiles(source).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal) && !f.EndsWith(".index.json", StringComparison.Ordinal)))
        {
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        }

        var tensors = CheckpointCopier.ReadAll(source);
        using var stream = File.Create(Path.Combine(destination, "model.safetensors"));
        using var writer = new SafetensorsWriter(stream);
        foreach (var tensor in tensors)
        {
            writer.AddTensor(tensor.Name, TensorDType.F32, tensor.Shape);
        }

        writer.WriteHeader();
        foreach (var tensor in tensors)
        {
            writer.WriteData(CheckpointCopier.Encode(values(tensor.Name, tensor.Values), TensorDType.F32));
        }
    }

    private static float[] ReadF32(string path, string name)
    {
        var file = GgufFile.Open(path);
        var tensor = file.FindTensor(name) ?? throw new InvalidOperationException($"{path} has no {name}");
        Assert.Equal(GgmlType.F32, tensor.Type);
        var values = new float[tensor.Dimensions.Aggregate(1L, (a, b) => a * b)];
        file.ReadTensorBytes(tensor, 0, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    private static double MaxDifference(List<float[]> a, List<float[]> b) =>
        a.Zip(b).Max(p => p.First.Zip(p.Second).Max(q => Math.Abs(q.First - q.Second)));
}
