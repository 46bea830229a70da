using System.CommandLine;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Hub;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Cli;

/// <summary>
/// The options every command that loads the model declares (which model, how to run it) and, for
/// <c>run</c> and <c>batch</c>, how to generate: declared once here, added to a command, and read into
/// <see cref="ModelFiles"/>, <see cref="ModelOptions"/> and <see cref="GenerationOptions"/>.
/// </summary>
internal sealed class GenerationCommandOptions
{
    private GenerationCommandOptions(bool sampling, string verboseDescription)
    {
        HasSampling = sampling;
        Verbose = new Option<bool>("--verbose", "-v") { Description = verboseDescription };
    }

    /// <summary>False for <c>serve</c>, whose requests carry their own sampling settings.</summary>
    public bool HasSampling { get; }

    public Option<string?> Model { get; } = new("--model", "-m") { Description = "Text model GGUF (with --mmproj), or a Hugging Face Hub repository OWNER/NAME (pulled and converted on first use)" };

    public Option<FileInfo?> Mmproj { get; } = new("--mmproj") { Description = "Vision (mmproj) GGUF (with --model)" };

    public Option<string?> ModelPath { get; } = new("--model-path", "--model_path")
    {
        Description = "Folder with one text GGUF and one mmproj GGUF, a Hugging Face checkpoint folder (converted on first use, then cached), or a Hub repository OWNER/NAME that is no local folder (pulled on first use)",
    };

    public HubCommandOptions Hub { get; } = HubCommandOptions.Create();

    public Option<int> MaxTokens { get; } = new("--max-tokens-to-generate", "--max_tokens_to_generate", "-n") { Description = "Most tokens to generate per answer", DefaultValueFactory = _ => 100 };

    public Option<float> Temperature { get; } = new("--temperature") { Description = "Sampling temperature (with --do-sample); 0 means greedy", DefaultValueFactory = _ => 0.8f };

    public Option<float> TopP { get; } = new("--top-p", "--top_p") { Description = "Nucleus sampling threshold (with --do-sample)", DefaultValueFactory = _ => 0.9f };

    public Option<int> TopK { get; } = new("--top-k", "--top_k") { Description = "Keep only the k most likely tokens (with --do-sample); 0 disables", DefaultValueFactory = _ => 0 };

    public Option<bool> DoSample { get; } = new("--do-sample", "--do_sample") { Description = "Sample instead of greedy decoding (accepts True/False)" };

    public Option<uint?> Seed { get; } = new("--seed") { Description = "Random seed for sampling (same seed, same output); each answer starts from it, as a separate run would" };

    public Option<bool> IgnoreEos { get; } = new("--ignore-eos") { Description = "Generate exactly --max-tokens-to-generate tokens, past end-of-sequence (benchmarks)" };

    public Option<bool> LowMemory { get; } = new("--low-memory") { Description = "Never hold the vision tower and the text model together: encode, free the vision tower, then load the text model (lower peak memory, a load per switch)" };

    public Option<int> Threads { get; } = new("--threads", "-t") { Description = "CPU threads", DefaultValueFactory = _ => Environment.ProcessorCount };

    public Option<bool> OnlyCpu { get; } = new("--only-cpu", "--only_cpu") { Description = "Never offload to a GPU (accepts True/False)" };

    public Option<int> GpuLayers { get; } = new("--gpu-layers", "-ngl") { Description = "Layers to offload when a GPU backend is installed", DefaultValueFactory = _ => 0 };

    public Option<bool> Exact { get; } = new("--exact") { Description = "Flash attention off and an F32 KV cache: closest to the reference, slower" };

    public Option<bool> IgnoreExifOrientation { get; } = new("--ignore-exif-orientation") { Description = IgnoreExifOrientationDescription };

    public Option<bool?> Mmap { get; } = new("--mmap") { Description = "Memory-map the text model (true/false) [default: chosen per file type]" };

    public Option<string> OutType { get; } = new("--outtype") { Description = "Text model type when converting a checkpoint folder", DefaultValueFactory = _ => OutputType.F16.Name };

    public Option<string> MmprojType { get; } = new("--mmproj-type") { Description = "mmproj type when converting a checkpoint folder", DefaultValueFactory = _ => OutputType.F16.Name };

    public Option<bool> Verbose { get; }

    /// <summary>For <c>run</c> and <c>batch</c>: the model, the engine and the sampling options.</summary>
    public static GenerationCommandOptions ForGeneration() => new(sampling: true, "Show llama.cpp/mtmd logs and stack traces");

    /// <summary>For <c>serve</c>: the model and the engine options; sampling comes with each request.</summary>
    public static GenerationCommandOptions ForServing() => new(sampling: false, "Show llama.cpp/mtmd logs and server errors in full");

    /// <summary>Adds every option this instance declares to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        Option[] model = [Model, Mmproj, ModelPath, Hub.Revision, Hub.Token, Hub.CacheDir, OutType, MmprojType];
        Option[] sampling = HasSampling ? [MaxTokens, Temperature, TopP, TopK, DoSample, Seed, IgnoreEos, LowMemory] : [];
        Option[] engine = [Threads, OnlyCpu, GpuLayers, Exact, Mmap, IgnoreExifOrientation, Verbose];
        foreach (var option in model.Concat(sampling).Concat(engine))
        {
            command.Options.Add(option);
        }
    }

    /// <summary>Shared with <c>annotate</c>, which must draw on the picture the model saw.</summary>
    public const string IgnoreExifOrientationDescription = "Use the pixels as stored, without turning them as the picture's EXIF orientation tag says (for pictures already turned that still carry the tag)";

    public bool IsVerbose(ParseResult parsed) => parsed.GetValue(Verbose);

    /// <summary>The text GGUF and mmproj the options name, pulling or converting first when they name a Hub repository or a checkpoint.</summary>
    public ModelFiles ResolveModel(ParseResult parsed, CancellationToken cancellationToken)
    {
        string? model = parsed.GetValue(Model);
        FileInfo? mmproj = parsed.GetValue(Mmproj);
        string? modelPath = parsed.GetValue(ModelPath);
        string outType = parsed.GetValue(OutType)!;
        string mmprojType = parsed.GetValue(MmprojType)!;

        // A Hub name where a path is expected, naming no local file or folder: pull it.
        string? hubReference = HubRepositoryName.IsHubReference(modelPath) ? modelPath : HubRepositoryName.IsHubReference(model) && mmproj is null && modelPath is null ? model : null;
        if (hubReference is not null)
        {
            if (mmproj is not null || (model is not null && modelPath is not null))
            {
                throw new PaliGemmaException("a Hub repository stands for both files: pass it alone, without --mmproj");
            }

            return HubCommandOptions.Resolve(HubRepositoryName.TryParse(hubReference)!, parsed, Hub, outType, mmprojType, alwaysAskHub: false, cancellationToken);
        }

        if (modelPath is not null)
        {
            if (model is not null || mmproj is not null)
            {
                throw new PaliGemmaException("pass either --model-path or --model with --mmproj, not both");
            }

            var progress = ConsoleProgress.ForStandardError();
            var files = ModelLocator.Resolve(
                Path.GetFullPath(modelPath),
                OutputType.Parse(outType, OutputType.TextTypes, "--outtype"),
                OutputType.Parse(mmprojType, OutputType.MmprojTypes, "--mmproj-type"),
                progress,
                cancellationToken);
            progress.Complete();
            return files;
        }

        if (model is null || mmproj is null)
        {
            throw new PaliGemmaException("no model: pass --model-path FOLDER, or --model TEXT.gguf with --mmproj MMPROJ.gguf");
        }

        return new ModelFiles(Path.GetFullPath(model), mmproj.FullName, false);
    }

    /// <summary>The folder next to which a model's companions (vae-oid.npz) are looked for.</summary>
    public string? ModelFolder(ParseResult parsed, ModelFiles files) =>
        parsed.GetValue(ModelPath) ?? Path.GetDirectoryName(files.TextModelPath);

    /// <summary>How to load and run the model; native log lines go to stderr with --verbose.</summary>
    public ModelOptions ReadModelOptions(ParseResult parsed) => new()
    {
        Threads = parsed.GetValue(Threads),
        GpuLayers = parsed.GetValue(OnlyCpu) ? 0 : parsed.GetValue(GpuLayers),
        Precision = parsed.GetValue(Exact) ? Precision.Exact : Precision.Fast,
        MemoryMap = parsed.GetValue(Mmap),
        LowMemory = HasSampling && parsed.GetValue(LowMemory),
        ApplyExifOrientation = !parsed.GetValue(IgnoreExifOrientation),
        NativeLog = IsVerbose(parsed) ? line => Console.Error.WriteLine(line) : null,
    };

    public GenerationOptions ReadGenerationOptions(ParseResult parsed)
    {
        if (!HasSampling)
        {
            throw new InvalidOperationException("these options were declared without the sampling ones");
        }

        return new GenerationOptions
        {
            MaxNewTokens = parsed.GetValue(MaxTokens),
            DoSample = parsed.GetValue(DoSample),
            Temperature = parsed.GetValue(Temperature),
            TopP = parsed.GetValue(TopP),
            TopK = parsed.GetValue(TopK),
            Seed = parsed.GetValue(Seed),
            IgnoreEndOfSequence = parsed.GetValue(IgnoreEos),
        };
    }
}
