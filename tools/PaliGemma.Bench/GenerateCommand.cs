using System.CommandLine;
using PaliGemma.Bench.Generation;
using PaliGemma.Cli.Shared;

namespace PaliGemma.Bench;

/// <summary><c>paligemma-bench generate</c>: a random-weight checkpoint with a published model's exact shapes.</summary>
internal static class GenerateCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model", "-m")
        {
            Description = "Published checkpoint whose shapes, names and configs to reproduce",
            Required = true,
        };
        model.AcceptOnlyFromAmong(ModelPreset.All.Select(p => p.Name).ToArray());
        var outDir = new Option<DirectoryInfo>("--out", "-o") { Description = "Folder for the checkpoint (created if needed)", HelpName = "dir", Required = true };
        var dtype = new Option<string>("--dtype")
        {
            Description = "Element type of the weights",
            DefaultValueFactory = _ => WeightFormat.BF16.Name,
        };
        dtype.AcceptOnlyFromAmong(WeightFormat.All.Select(f => f.Name).ToArray());
        var seed = new Option<ulong>("--seed")
        {
            Description = "Seed of the random values: the same seed gives the same files",
            HelpName = "n",
            DefaultValueFactory = _ => 0,
        };
        var maxShardSize = new Option<long>("--max-shard-size")
        {
            Description = "Largest safetensors file in bytes (save_pretrained's \"5GB\")",
            HelpName = "bytes",
            DefaultValueFactory = _ => ShardPlan.DefaultMaxShardBytes,
        };
        maxShardSize.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<long>() <= 0)
            {
                result.AddError("--max-shard-size must be positive");
            }
        });
        var force = new Option<bool>("--force", "-f") { Description = "Replace a checkpoint already in the folder" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show stack traces" };

        var command = new Command("generate", "Write a random-weight PaliGemma checkpoint in the Hugging Face Hub layout (sharded safetensors, config.json, tokenizer), for benchmarks.")
        {
            model, outDir, dtype, seed, maxShardSize, force, verbose,
        };
        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), cancellationToken =>
        {
            var options = new GenerationOptions(
                ModelPreset.Get(parsed.GetValue(model)!),
                WeightFormat.Get(parsed.GetValue(dtype)!),
                parsed.GetValue(outDir)!.FullName,
                parsed.GetValue(seed),
                parsed.GetValue(maxShardSize),
                parsed.GetValue(force));
            var result = CheckpointGenerator.Generate(options, cancellationToken);
            Console.Error.WriteLine(
                $"{options.Preset.Name} ({options.Format.Name}, seed {options.Seed}): {result.ShardCount} shard(s), " +
                $"{GenerationProgress.Bytes(result.WeightBytes)} of weights in {result.WeightsElapsed.TotalSeconds:F1} s " +
                $"({GenerationProgress.Rate(result.WeightBytes, result.WeightsElapsed)})");
            Console.WriteLine(result.Directory);
            return 0;
        }));
        return command;
    }
}
