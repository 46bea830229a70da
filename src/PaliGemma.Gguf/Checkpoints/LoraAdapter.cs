using System.Text.Json;
using System.Text.RegularExpressions;

namespace PaliGemma.Gguf.Checkpoints;

/// <summary>
/// The update a LoRA module adds to its base weight: W' = W + Scale * B A, with A of shape
/// [r, in] and B of shape [out, r] (PyTorch order). Small: r is 4 to 256 against widths in the
/// thousands, so both factors are held in memory and the product is formed a row at a time.
/// </summary>
public sealed class LowRankDelta
{
    internal LowRankDelta(string module, float[] a, float[] b, int rank, long inputs, long outputs, double scale)
    {
        Module = module;
        A = a;
        B = b;
        Rank = rank;
        Inputs = inputs;
        Outputs = outputs;
        Scale = scale;
    }

    /// <summary>The module's name in the adapter (e.g. <c>language_model.model.layers.0.self_attn.q_proj</c>).</summary>
    public string Module { get; }

    public int Rank { get; }

    public long Inputs { get; }

    public long Outputs { get; }

    /// <summary>lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.</summary>
    public double Scale { get; }

    internal float[] A { get; }

    internal float[] B { get; }

    /// <summary>Adds Scale * (B A) to rows [firstRow, firstRow + rows) of the weight in <paramref name="destination"/>.</summary>
    internal void AddTo(long firstRow, Span<float> destination)
    {
        int width = checked((int)Inputs);
        int rows = destination.Length / width;
        for (int row = 0; row < rows; row++)
        {
            var target = destination.Slice(row * width, width);
            long outputRow = firstRow + row;
            for (int k = 0; k < Rank; k++)
            {
                float coefficient = (float)(Scale * B[(outputRow * Rank) + k]);
                if (coefficient != 0f)
                {
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(A.AsSpan(k * width, width), coefficient, target, target);
                }
            }
        }
    }
}

/// <summary>
/// A PEFT LoRA adapter folder (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>), read
/// into one <see cref="LowRankDelta"/> per adapted weight, keyed by the base tensor's canonical name.
/// Everything that cannot be merged exactly into the base weights is refused with the reason.
/// </summary>
public sealed class LoraAdapter
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";

    private static readonly Regex KeyPattern = new(@"^(?:base_model\.model\.)?(?<module>.+)\.(?<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(?:\.[A-Za-z0-9_-]+)?(?:\.weight)?$", RegexOptions.CultureInvariant);

    private LoraAdapter(string directory, string? baseModel, IReadOnlyDictionary<string, LowRankDelta> deltas)
    {
        Directory = directory;
        BaseModel = baseModel;
        Deltas = deltas;
    }

    public string Directory { get; }

    /// <summary><c>base_model_name_or_path</c>: what the adapter was trained on, as its author named it.</summary>
    public string? BaseModel { get; }

    /// <summary>The weight updates, keyed by the canonical name of the base tensor they apply to.</summary>
    public IReadOnlyDictionary<string, LowRankDelta> Deltas { get; }

    public static LoraAdapter Load(string directory)
    {
        string configPath = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(configPath))
        {
            throw PaliGemmaException.InFile(directory, $"not a PEFT adapter folder: no {ConfigFileName}");
        }

        var config = ReadConfig(configPath);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            string hint = File.Exists(Path.Combine(directory, "adapter_model.bin")) ? " (only adapter_model.bin, a pickle: save the adapter with safe_serialization=True)" : "";
            throw PaliGemmaException.InFile(directory, $"no {WeightsFileName}{hint}");
        }

        using var file = SafetensorsFile.Open(weightsPath);
        var factors = new Dictionary<string, (SafetensorsTensor? A, SafetensorsTensor? B)>(StringComparer.Ordinal);
        foreach (var tensor in file.Tensors.Values)
        {
            var match = KeyPattern.Match(tensor.Name);
            if (!match.Success)
            {
                throw PaliGemmaException.InFile(weightsPath, $"tensor '{TensorNames.ForMessage(tensor.Name)}' is not a LoRA factor (lora_A/lora_B); modules saved whole or other tuners cannot be merged");
            }

            string module = match.Groups["module"].Value;
            switch (match.Groups["part"].Value)
            {
                case "lora_magnitude_vector":
                    throw PaliGemmaException.InFile(weightsPath, $"'{TensorNames.ForMessage(module)}' has a DoRA magnitude vector: DoRA adapters cannot be merged as W + BA");
                case "lora_embedding_A" or "lora_embedding_B":
                    throw PaliGemmaException.InFile(weightsPath, $"'{TensorNames.ForMessage(module)}' is an adapted embedding: only linear layers merge here");
            }

            factors.TryGetValue(module, out var pair);
            factors[module] = match.Groups["part"].Value == "lora_A" ? (tensor, pair.B) : (pair.A, tensor);
        }

        if (factors.Count == 0)
        {
            throw PaliGemmaException.InFile(weightsPath, "holds no LoRA factors");
        }

        var deltas = new Dictionary<string, LowRankDelta>(StringComparer.Ordinal);
        foreach (var (module, (a, b)) in factors.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            if (a is null || b is null)
            {
                throw PaliGemmaException.InFile(weightsPath, $"'{TensorNames.ForMessage(module)}' has lora_{(a is null ? "B" : "A")} without lora_{(a is null ? "A" : "B")}");
            }

            if (!config.Targets(module))
            {
                throw PaliGemmaException.InFile(weightsPath, $"'{TensorNames.ForMessage(module)}' is not among the adapter's target_modules ({config.TargetText})");
            }

            if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[0] != b.Shape[1] || !a.DType.IsFloatingPoint() || !b.DType.IsFloatingPoint())
            {
                throw PaliGemmaException.InFile(weightsPath, $"'{TensorNames.ForMessage(module)}': lora_A {a.ShapeText} {a.DType} and lora_B {b.ShapeText} {b.DType} are not the float matrices [r, in] and [out, r] of a linear layer (convolutions do not merge here)");
            }

            int rank = checked((int)a.Shape[0]);
            int expectedRank = config.RankFor(module);
            if (rank != expectedRank)
            {
                throw PaliGemmaException.InFile(weightsPath, $"'{TensorNames.ForMessage(module)}' has rank {rank} but adapter_config.json says r = {expectedRank}");
            }

            double alpha = config.AlphaFor(module);
            double scale = config.UseRsLora ? alpha / Math.Sqrt(rank) : alpha / rank;
            deltas[TensorNames.Canonicalize(module + ".weight")] = new LowRankDelta(module, Read(file, a), Read(file, b), rank, a.Shape[1], b.Shape[0], scale);
        }

        return new LoraAdapter(directory, config.BaseModel, deltas);
    }

    private static float[] Read(SafetensorsFile file, SafetensorsTensor tensor) => new CheckpointTensor(file, tensor).ReadAll();

    private static AdapterConfig ReadConfig(string path)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { MaxDepth = 16 });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw PaliGemmaException.InFile(path, "not a JSON object");
            }

            string? String(string key) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            bool True(string key) => root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.True;
            bool NonEmpty(string key) => root.TryGetProperty(key, out var v) && v.ValueKind switch
            {
                JsonValueKind.Array => v.GetArrayLength() > 0,
                JsonValueKind.Object => v.EnumerateObject().Any(),
                JsonValueKind.String => v.GetString()!.Length > 0,
                _ => false,
            };

            if (String("peft_type") is { } type && type != "LORA")
            {
                throw PaliGemmaException.InFile(path, $"peft_type is {TensorNames.ForMessage(type)}: only LORA adapters merge");
            }

            if (True("use_dora"))
            {
                throw PaliGemmaException.InFile(path, "use_dora is true: DoRA rescales each column by a learnt magnitude and cannot be merged as W + BA");
            }

            if (String("bias") is { } bias && bias != "none")
            {
                throw PaliGemmaException.InFile(path, $"bias is \"{TensorNames.ForMessage(bias)}\": the adapter trains biases this converter does not merge (only bias \"none\")");
            }

            if (True("lora_bias"))
            {
                throw PaliGemmaException.InFile(path, "lora_bias is true: lora_B carries a bias this converter does not merge");
            }

            if (NonEmpty("modules_to_save"))
            {
                throw PaliGemmaException.InFile(path, "modules_to_save is set: the adapter replaces whole modules, which this converter does not merge");
            }

            if (NonEmpty("layer_replication") || NonEmpty("target_parameters"))
            {
                throw PaliGemmaException.InFile(path, "layer_replication / target_parameters are set: not a plain LoRA on linear layers");
            }

            if (!root.TryGetProperty("r", out var r) || !r.TryGetInt32(out int rank) || rank <= 0)
            {
                throw PaliGemmaException.InFile(path, "no positive integer \"r\"");
            }

            double alpha = root.TryGetProperty("lora_alpha", out var a) && a.ValueKind == JsonValueKind.Number ? a.GetDouble() : 8;
            var targets = root.TryGetProperty("target_modules", out var t) ? t.Clone() : default;
            if (targets.ValueKind is not (JsonValueKind.Array or JsonValueKind.String))
            {
                throw PaliGemmaException.InFile(path, "no \"target_modules\" (a list of names or a regular expression)");
            }

            Dictionary<string, double> Pattern(string key) => root.TryGetProperty(key, out var p) && p.ValueKind == JsonValueKind.Object
                ? p.EnumerateObject().Where(e => e.Value.ValueKind == JsonValueKind.Number).ToDictionary(e => e.Name, e => e.Value.GetDouble())
                : [];

            return new AdapterConfig(rank, alpha, True("use_rslora"), targets, Pattern("rank_pattern"), Pattern("alpha_pattern"), String("base_model_name_or_path"));
        }
        catch (JsonException e)
        {
            throw PaliGemmaException.InFile(path, $"invalid JSON: {TensorNames.ForMessage(e.Message)}", e);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot read: {e.Message}", e);
        }
    }

    private sealed record AdapterConfig(int Rank, double Alpha, bool UseRsLora, JsonElement TargetModules, Dictionary<string, double> RankPattern, Dictionary<string, double> AlphaPattern, string? BaseModel)
    {
        public string TargetText => TensorNames.ForMessage(TargetModules.GetRawText());

        /// <summary>PEFT's rule: a regular expression must match the whole module name; a list entry must equal it or its last components.</summary>
        public bool Targets(string module)
        {
            if (TargetModules.ValueKind == JsonValueKind.String)
            {
                string pattern = TargetModules.GetString()!;
                return pattern == "all-linear" || Regex.IsMatch(module, $"^(?:{pattern})$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            }

            return TargetModules.EnumerateArray().Any(t => t.GetString() is { } name && (module == name || module.EndsWith("." + name, StringComparison.Ordinal)));
        }

        public int RankFor(string module) => PatternValue(RankPattern, module) is { } r ? (int)r : Rank;

        public double AlphaFor(string module) => PatternValue(AlphaPattern, module) ?? Alpha;

        /// <summary>rank_pattern / alpha_pattern keys are regular expressions over the module name's tail, as in PEFT.</summary>
        private static double? PatternValue(Dictionary<string, double> pattern, string module)
        {
            foreach (var (key, value) in pattern)
            {
                if (Regex.IsMatch(module, $"^(?:.*\\.)?(?:{key})$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)))
                {
                    return value;
                }
            }

            return null;
        }
    }
}
