using System.Collections.Concurrent;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// Golden checkpoints and the trained tiny model converted once per test run (per model and types) into a temporary folder,
/// and loaded models shared between tests (loading and the scale probe cost time).
/// </summary>
public static class TestModels
{
    private static readonly string Root = Path.Combine(Path.GetTempPath(), $"paligemma-tests-{Environment.ProcessId}");
    private static readonly ConcurrentDictionary<string, Lazy<ConversionResult>> Conversions = new();
    private static readonly ConcurrentDictionary<string, Lazy<PaliGemmaModel>> Loaded = new();

    static TestModels()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var model in Loaded.Values.Where(l => l.IsValueCreated))
            {
                model.Value.Dispose();
            }

            try
            {
                Directory.Delete(Root, recursive: true);
            }
            catch (IOException)
            {
            }
        };
    }

    public static ConversionResult Converted(string model, OutputType? text = null, OutputType? mmproj = null) =>
        Convert(model, GoldenData.Model(model).Directory, text, mmproj);

    /// <summary>A conversion of the trained tiny model (tests/fixtures/trained, or PALIGEMMA_TRAINED_EVAL's), F32 unless told.</summary>
    public static ConversionResult ConvertedTrained(OutputType? text = null, OutputType? mmproj = null) =>
        Convert("trained-" + TrainedEval.ModelName, TrainedEval.ModelDirectory, text, mmproj);

    /// <summary>An F32 conversion of a golden model, loaded in the given precision.</summary>
    public static PaliGemmaModel Load(string model, Precision precision = Precision.Exact, OutputType? text = null, OutputType? mmproj = null) =>
        Load(Converted(model, text, mmproj), precision);

    /// <summary>The trained tiny model, F32 unless told, loaded once per precision and types.</summary>
    public static PaliGemmaModel LoadTrained(Precision precision = Precision.Exact, OutputType? text = null, OutputType? mmproj = null) =>
        Load(ConvertedTrained(text, mmproj), precision);

    private static ConversionResult Convert(string name, string checkpoint, OutputType? text, OutputType? mmproj)
    {
        text ??= OutputType.F32;
        mmproj ??= OutputType.F32;
        string key = $"{name}.{text.Name}.{mmproj.Name}";
        return Conversions.GetOrAdd(key, _ => new Lazy<ConversionResult>(() => CheckpointConverter.Convert(
            checkpoint,
            new ConversionOptions { OutputDirectory = Path.Combine(Root, key), TextType = text, MmprojType = mmproj }))).Value;
    }

    private static PaliGemmaModel Load(ConversionResult files, Precision precision)
    {
        string key = $"{files.TextModelPath}|{files.MmprojPath}|{precision}";
        return Loaded.GetOrAdd(key, _ => new Lazy<PaliGemmaModel>(() => PaliGemmaModel.Load(
            files.TextModelPath,
            files.MmprojPath,
            new ModelOptions { Precision = precision, Threads = Environment.ProcessorCount }))).Value;
    }

    /// <summary>A fresh folder under the run's temporary root.</summary>
    public static string NewFolder(string name)
    {
        string path = Path.Combine(Root, $"{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }
}
