using System.Diagnostics;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// The whole path a user's GGUF pair takes: mutated copies of the tiny model's text GGUF and mmproj
/// go through <see cref="ModelFileValidator"/>, and every pair it accepts is then run by the real
/// <c>paligemma run</c> in a child process, where llama.cpp loads it, encodes a picture and decodes.
/// The child must finish with exit code 0, or 1 and one error line: an abort (GGML_ASSERT, SIGFPE,
/// SIGSEGV) there means the validator let through a file llama.cpp cannot survive, and a native abort
/// in a child shows as a failed case instead of a dead test host. Seeded, so a failure repeats.
/// </summary>
public sealed class ModelLoadFuzzTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>Mutations tried in-process; the accepted ones (at most <see cref="ChildRuns"/>) go to a child.</summary>
    public const string CasesVariable = "PALIGEMMA_FUZZ_LOAD_CASES";

    /// <summary>Another seed for a longer exploration (the default one is what CI repeats).</summary>
    public const string SeedVariable = "PALIGEMMA_FUZZ_LOAD_SEED";

    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable(SeedVariable), out int seed) ? seed : 20261202;

    private readonly ScratchFolder _scratch = new("load");

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Pairs_the_validator_accepts_run_in_llama_cpp_without_a_native_abort()
    {
        var files = TestModels.Converted("tiny-paligemma-224");
        var text = new ModelFileMutator(files.TextModelPath);
        var mmproj = new ModelFileMutator(files.MmprojPath);
        int cases = int.TryParse(Environment.GetEnvironmentVariable(CasesVariable), out int n) && n > 0 ? n : 120;
        int childRuns = Math.Max(16, cases / 8);
        var random = new Random(Seed);
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        int children = 0;
        for (int i = 0; i < cases && children < childRuns; i++)
        {
            bool mutateText = random.Next(2) == 0;
            string folder = Path.Combine(_scratch.Path, $"case{i}");
            Directory.CreateDirectory(folder);
            string textPath = mutateText ? Path.Combine(folder, "text.gguf") : files.TextModelPath;
            string mmprojPath = mutateText ? files.MmprojPath : Path.Combine(folder, "mmproj.gguf");
            string mutation = (mutateText ? text : mmproj).WriteMutated(random, mutateText ? textPath : mmprojPath);
            string label = $"case {i} ({(mutateText ? "text" : "mmproj")}: {mutation})";

            var thrown = Fuzz.Guard(label, () =>
            {
                int embedding = ModelFileValidator.ValidateTextModel(GgufFile.Open(textPath));
                ModelFileValidator.ValidateMmproj(GgufFile.Open(mmprojPath), embedding);
            });
            if (thrown is PaliGemmaException)
            {
                Count(outcomes, "refused by the validator");
                Directory.Delete(folder, recursive: true);
                continue;
            }

            if (thrown is not null)
            {
                failures.Add($"{label}: the validator threw {thrown.GetType().Name}: {thrown.Message}");
                continue;
            }

            children++;
            string outcome = RunChild(textPath, mmprojPath, label, failures);
            Count(outcomes, outcome);
            if (outcome != "failed")
            {
                Directory.Delete(folder, recursive: true);
            }
        }

        output.WriteLine($"seed {Seed}: {outcomes.Values.Sum()} cases in {clock.Elapsed.TotalSeconds:F1} s, {children} run by llama.cpp in a child");
        foreach (var (outcome, count) in outcomes)
        {
            output.WriteLine($"  {count,4}  {outcome}");
        }

        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    private static string RunChild(string textPath, string mmprojPath, string label, List<string> failures)
    {
        CliProcess.Result result;
        try
        {
            result = CliProcess.Run("paligemma", TimeSpan.FromSeconds(60), "run", "--model", textPath, "--mmproj", mmprojPath, "-i", GoldenData.ImagePath("chelsea"), "-p", "caption en", "-n", "2", "--threads", "1");
        }
        catch (TimeoutException e)
        {
            failures.Add($"{label}: {e.Message}");
            return "failed";
        }

        if (result.ExitCode == 0)
        {
            return "accepted and ran";
        }

        var errors = result.ErrorLines;
        if (result.ExitCode == 1 && errors.Length > 0 && errors[^1].StartsWith("error: ", StringComparison.Ordinal) && !result.StandardError.Contains("   at ", StringComparison.Ordinal))
        {
            return "refused by llama.cpp with one line";
        }

        failures.Add($"{label}: exit code {result.ExitCode} (the validator accepted it): {string.Join(" | ", errors.TakeLast(3))}");
        return "failed";
    }

    private static void Count(SortedDictionary<string, int> outcomes, string outcome) =>
        outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;

    public void Dispose() => _scratch.Dispose();
}

/// <summary>
/// Writes a copy of a valid GGUF with one plausible mistake: a metadata value changed (edge values,
/// off by one, doubled, halved, another type), a key dropped, a tensor stored in another type, or a
/// raw header field (tensor dimension, type, offset, array length) edited in place.
/// </summary>
internal sealed class ModelFileMutator
{
    private static readonly string[] HeaderFields = ["tensor dimension", "tensor type", "tensor offset", "array length", "tensor dimension count"];

    private readonly string _source;
    private readonly GgufFile _file;
    private readonly GgufMutation _raw;
    private readonly string[] _scalarKeys;

    public ModelFileMutator(string source)
    {
        _source = source;
        _file = GgufFile.Open(source);
        _raw = new GgufMutation(Path.GetFileName(source), File.ReadAllBytes(source));
        _scalarKeys = [.. _file.MetadataList.Where(m => m.Value.Type != GgufValueType.Array || m.Value.ElementType == GgufValueType.Float32).Select(m => m.Key)];
    }

    /// <summary>Writes the mutated file; returns what was changed.</summary>
    public string WriteMutated(Random random, string destination)
    {
        int kind = random.Next(20);
        if (kind < 11)
        {
            string key = _scalarKeys[random.Next(_scalarKeys.Length)];
            var replacement = Replace(random, _file.Metadata[key]);
            GgufRewriter.Rewrite(_source, destination, metadata: (k, v) => k == key ? replacement : v);
            return $"{key} = {replacement.Type} {replacement}";
        }

        if (kind < 14)
        {
            string key = _scalarKeys[random.Next(_scalarKeys.Length)];
            GgufRewriter.Rewrite(_source, destination, metadata: (k, v) => k == key ? null : v);
            return $"{key} dropped";
        }

        if (kind < 17)
        {
            var f32 = _file.Tensors.Where(t => t.Type == GgmlType.F32).ToList();
            var tensor = f32[random.Next(f32.Count)];
            var type = random.Next(2) == 0 ? GgmlType.F16 : GgmlType.BF16;
            GgufRewriter.Rewrite(_source, destination, tensorType: t => t.Name == tensor.Name ? type : t.Type);
            return $"{tensor.Name} stored as {type}";
        }

        string field = HeaderFields[random.Next(HeaderFields.Length)];
        var edit = random.Next(3) == 0
            ? new GgufMutation.FieldEdit(field, (uint)random.NextInt64(uint.MaxValue + 1L), (ulong)random.Next(0, 40), Relative: false)
            : new GgufMutation.FieldEdit(field, (uint)random.NextInt64(uint.MaxValue + 1L), unchecked((ulong)(long)random.Next(-3, 4)), Relative: true);
        File.WriteAllBytes(destination, _raw.Apply(new GgufMutation.Case([edit], [])));
        return $"header {edit}";
    }

    private static GgufValue Replace(Random random, GgufValue original)
    {
        if (random.Next(6) == 0)
        {
            // Another type for the same key.
            return random.Next(3) switch
            {
                0 => GgufValue.Of("x"),
                1 => GgufValue.Of(1.5f),
                _ => GgufValue.Of(7),
            };
        }

        switch (original.Value)
        {
            case uint u:
                uint[] uints = [0, 1, 2, 3, 5, 7, 64, 255, 65536, u - 1, u + 1, u * 2, u / 2, int.MaxValue, uint.MaxValue];
                return GgufValue.Of(uints[random.Next(uints.Length)]);
            case int i:
                int[] ints = [-1, 0, 1, 2, i - 1, i + 1, i * 2, int.MinValue, int.MaxValue];
                return GgufValue.Of(ints[random.Next(ints.Length)]);
            case float f:
                float[] floats = [0, -1, 1e-30f, 1e30f, float.NaN, float.PositiveInfinity, f * 2, f / 2, -f];
                return GgufValue.Of(floats[random.Next(floats.Length)]);
            case bool b:
                return GgufValue.Of(!b);
            case float[] array:
                float[][] arrays = [[], [0.5f], [0, 0, 0], [float.NaN, 0.5f, 0.5f], [.. array, .. array]];
                return GgufValue.Array(arrays[random.Next(arrays.Length)]);
            case string s:
                string[] strings = ["", "x", s + "x", "gemma", "gemma2", "clip", "llama", "janus_pro", "mlp"];
                return GgufValue.Of(strings[random.Next(strings.Length)]);
            default:
                return GgufValue.Of(0u);
        }
    }
}
