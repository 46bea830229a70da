using System.Text.Json.Nodes;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Conversion;

/// <summary>
/// Full fine-tunes (Google's -ft- checkpoints, community ones) are saved by another
/// transformers run than the base: config.json's fields in another order with extra keys, a
/// generation_config.json, one model.safetensors without an index. They must convert to exactly
/// the files the base layout gives.
/// </summary>
public sealed class FineTuneCheckpointTests
{
    [Theory]
    [InlineData("tiny-paligemma-224")]
    [InlineData("tiny-paligemma2-224")]
    public void A_checkpoint_saved_the_way_fine_tunes_are_converts_byte_for_byte_like_the_base(string model)
    {
        string source = GoldenData.Model(model).Directory;
        string fineTune = CheckpointCopier.Copy(source, Path.Combine(TestModels.NewFolder("finetune"), model), shards: 1);
        Assert.False(File.Exists(Path.Combine(fineTune, "model.safetensors.index.json")));

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(fineTune, "config.json")))!.AsObject();
        var reordered = new JsonObject();
        foreach (var (key, value) in config.Reverse().ToList())
        {
            config.Remove(key);
            if (value is JsonObject section && key == "text_config")
            {
                var text = new JsonObject();
                foreach (var (k, v) in section.Reverse().ToList())
                {
                    section.Remove(k);
                    text[k] = v;
                }

                text["use_cache"] = false;
                text["torch_dtype"] = "bfloat16";
                reordered[key] = text;
            }
            else
            {
                reordered[key] = value;
            }
        }

        reordered["_name_or_path"] = "someone/paligemma-finetuned-on-docs";
        reordered["transformers_version"] = "4.57.1";
        File.WriteAllText(Path.Combine(fineTune, "config.json"), reordered.ToJsonString());
        Assert.NotEqual(File.ReadAllText(Path.Combine(source, "config.json")).Replace(" ", "", StringComparison.Ordinal), reordered.ToJsonString());
        File.WriteAllText(Path.Combine(fineTune, "generation_config.json"), """{"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "max_length": 512, "transformers_version": "4.57.1"}""");

        var options = new ConversionOptions { TextType = OutputType.F32, MmprojType = OutputType.F32, Name = "same" };
        var fromBase = CheckpointConverter.Convert(source, options with { OutputDirectory = TestModels.NewFolder("base-out") });
        var fromFineTune = CheckpointConverter.Convert(fineTune, options with { OutputDirectory = TestModels.NewFolder("finetune-out") });

        Assert.Equal(File.ReadAllBytes(fromBase.TextModelPath), File.ReadAllBytes(fromFineTune.TextModelPath));
        Assert.Equal(File.ReadAllBytes(fromBase.MmprojPath), File.ReadAllBytes(fromFineTune.MmprojPath));
    }
}
