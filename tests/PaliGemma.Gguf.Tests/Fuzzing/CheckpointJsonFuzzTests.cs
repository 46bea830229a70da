using CsCheck;
using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Conversion;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// The golden checkpoint folder with one of its JSON files broken: config.json,
/// model.safetensors.index.json or preprocessor_config.json.
/// </summary>
public sealed class CheckpointJsonFuzzTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Lazy<Target[]> Targets = new(() =>
    [
        new("config.json", [
            "\"paligemma\"", "\"gemma\"", "\"gemma2\"", "\"siglip_vision_model\"", "\"llama\"",
            "64", "32", "4", "1", "0", "2152", "2176", "2175", "224", "14", "4096", "4097", "1e-6", "[\"LlamaForCausalLM\"]", "[\n\"a\",\n\"b\"\n]",
        ], ["model_type", "text_config", "vision_config", "hidden_size", "projection_dim", "image_token_index", "image_token_id", "vocab_size",
            "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers", "intermediate_size", "image_size", "patch_size",
            "rms_norm_eps", "rope_theta", "query_pre_attn_scalar", "sliding_window", "architectures"]),
        new(Checkpoint.IndexFileName, [
            "\"model-00001-of-00002.safetensors\"", "\"model-00002-of-00002.safetensors\"", "\"config.json\"", "\"tokenizer.model\"",
            "\"../model-00001-of-00002.safetensors\"", "\"..\"", "\".\"", "\"/etc/passwd\"", "\"missing.safetensors\"", "\"\"", "\"a\\u0000b\"",
        ], ["weight_map", "metadata", "total_size", "language_model.model.embed_tokens.weight", "lm_head.weight"]),
        new("preprocessor_config.json", ["[0.5,0.5,0.5]", "[0,0,0]", "[-1,1,1]", "[1e39,1,1]", "[\"x\",1,1]", "[null,1,1]", "[1,2]"], ["image_mean", "image_std"]),
    ]);

    private readonly ScratchFolder _scratch = new("checkpoint-json");

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Mutated_config_index_and_preprocessor_json_open_or_are_refused_with_a_PaliGemmaException_naming_the_file()
    {
        var targets = Targets.Value;
        var gen = Gen.Int[0, targets.Length - 1].SelectMany(t => targets[t].Mutation.Edits.Select(edits => (t, edits)));
        gen.Sample(
            (target, edits) =>
            {
                string directory = PrepareThreadFolder(targets);
                File.WriteAllBytes(Path.Combine(directory, targets[target].FileName), targets[target].Mutation.Apply(edits));
                return targets[target].FileName + " " + Fuzz.Expect(directory, () => Load(directory));
            },
            output.WriteLine,
            iter: Fuzz.Iterations(600),
            print: t => $"{targets[t.Item1].FileName}: {t.Item2}");
    }

    /// <summary>What the converter reads from these files before any tensor data.</summary>
    private static void Load(string directory)
    {
        using (var checkpoint = Checkpoint.Open(directory))
        {
            _ = checkpoint.Config.Vision.ImageTokens;
            _ = checkpoint.TensorBytes;
            foreach (string name in checkpoint.CanonicalNames)
            {
                _ = checkpoint.Get(name).Shape;
            }
        }

        ImageNormalization.Load(directory);
    }

    /// <summary>This thread's copy of the golden folder, with the JSON files the last case broke restored.</summary>
    private string PrepareThreadFolder(Target[] targets)
    {
        string directory = _scratch.ThreadFolder;
        if (!File.Exists(Path.Combine(directory, "config.json")))
        {
            ScratchFolder.CopyFiles(Fuzz.GoldenCheckpoint, directory);
        }

        foreach (var target in targets)
        {
            File.WriteAllBytes(Path.Combine(directory, target.FileName), target.Original);
        }

        return directory;
    }

    public void Dispose() => _scratch.Dispose();

    private sealed class Target
    {
        public Target(string fileName, string[] domainValues, string[] domainKeys)
        {
            FileName = fileName;
            Original = File.ReadAllBytes(Path.Combine(Fuzz.GoldenCheckpoint, fileName));
            Mutation = new JsonMutation(Original, domainValues, domainKeys);
        }

        public string FileName { get; }

        public byte[] Original { get; }

        public JsonMutation Mutation { get; }
    }
}
