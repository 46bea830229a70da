using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// Writes PEFT LoRA adapters for a test checkpoint the way PEFT saves them: keys
/// <c>base_model.model.MODULE.lora_A.weight</c> ([r, in]) and <c>.lora_B.weight</c> ([out, r]),
/// and an adapter_config.json, with seeded random factors (B is non-zero, as after training).
/// </summary>
public static class LoraAdapterWriter
{
    public sealed record Module(string Name, long Outputs, long Inputs, float[] A, float[] B);

    /// <summary>Seeded factors for <paramref name="modules"/> (names without ".weight"), shaped after the base checkpoint's weights.</summary>
    public static List<Module> RandomFactors(string baseDirectory, IEnumerable<string> modules, int rank, int seed = 17, float magnitude = 0.2f)
    {
        var random = new Random(seed);
        var shapes = CheckpointCopier.ReadAll(baseDirectory).ToDictionary(t => t.Name, t => t.Shape);
        return modules.Select(name =>
        {
            long[] shape = shapes[name + ".weight"];
            float Next() => (float)((random.NextDouble() * 2) - 1) * magnitude;
            return new Module(name, shape[0], shape[1], Enumerable.Range(0, checked((int)(rank * shape[1]))).Select(_ => Next()).ToArray(), Enumerable.Range(0, checked((int)(shape[0] * rank))).Select(_ => Next()).ToArray());
        }).ToList();
    }

    public static string Write(string directory, IReadOnlyList<Module> modules, int rank, double alpha, Dictionary<string, object>? configOverrides = null, IEnumerable<(string Key, long[] Shape)>? extraTensors = null)
    {
        Directory.CreateDirectory(directory);
        var config = new Dictionary<string, object?>
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = "google/tiny-paligemma-224",
            ["r"] = rank,
            ["lora_alpha"] = alpha,
            ["lora_dropout"] = 0.05,
            ["target_modules"] = modules.Select(m => m.Name.Split('.')[^1]).Distinct().ToArray(),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["use_rslora"] = false,
            ["use_dora"] = false,
            ["modules_to_save"] = null,
            ["rank_pattern"] = new Dictionary<string, int>(),
            ["alpha_pattern"] = new Dictionary<string, double>(),
        };
        foreach (var (key, value) in configOverrides ?? [])
        {
            config[key] = value;
        }

        File.WriteAllText(Path.Combine(directory, LoraAdapter.ConfigFileName), JsonSerializer.Serialize(config));
        using var stream = File.Create(Path.Combine(directory, LoraAdapter.WeightsFileName));
        using var writer = new SafetensorsWriter(stream);
        var extras = (extraTensors ?? []).ToList();
        foreach (var module in modules)
        {
            writer.AddTensor($"base_model.model.{module.Name}.lora_A.weight", TensorDType.F32, module.A.Length / module.Inputs, module.Inputs);
            writer.AddTensor($"base_model.model.{module.Name}.lora_B.weight", TensorDType.F32, module.Outputs, module.B.Length / module.Outputs);
        }

        foreach (var (key, shape) in extras)
        {
            writer.AddTensor(key, TensorDType.F32, shape);
        }

        writer.WriteHeader();
        foreach (var module in modules)
        {
            writer.WriteData(CheckpointCopier.Encode(module.A, TensorDType.F32));
            writer.WriteData(CheckpointCopier.Encode(module.B, TensorDType.F32));
        }

        foreach (var (_, shape) in extras)
        {
            writer.WriteData(new byte[shape.Aggregate(4L, (a, b) => a * b)]);
        }

        return directory;
    }

    /// <summary>W + scale * B A in double, rounded once to float: computed apart from the converter.</summary>
    public static float[] Merged(float[] weight, Module module, double scale)
    {
        int rank = module.A.Length / (int)module.Inputs;
        var merged = new float[weight.Length];
        for (long i = 0; i < module.Outputs; i++)
        {
            for (long j = 0; j < module.Inputs; j++)
            {
                double sum = 0;
                for (int k = 0; k < rank; k++)
                {
                    sum += (double)module.B[(i * rank) + k] * module.A[(k * module.Inputs) + j];
                }

                merged[(i * module.Inputs) + j] = (float)(weight[(i * module.Inputs) + j] + (scale * sum));
            }
        }

        return merged;
    }
}
