using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// The proof: for every golden model and case, the F32 GGUFs run through llama.cpp compute what
/// Hugging Face transformers computes (prefix ids, the logits of 16 teacher-forced steps, and the
/// free-running greedy tokens).
/// </summary>
[Trait("Category", "Golden")]
public sealed class GoldenParityTests(ITestOutputHelper output)
{
    /// <summary>Exact mode (flash attention off, F32 KV cache): measured 2.1e-3 (PaliGemma) and 4.1e-3 (PaliGemma 2), README Accuracy.</summary>
    private const double ExactTolerance = 0.01;

    /// <summary>llama.cpp's defaults (flash attention, F16 KV cache): measured 1.0e-2 and 2.5e-2, README Accuracy.</summary>
    private const double FastTolerance = 0.05;

    private const int Steps = TeacherForcing.Steps;

    public static TheoryData<string> CaseKeys() => new(GoldenData.Cases.Select(c => c.Key));

    [Theory]
    [MemberData(nameof(CaseKeys))]
    public void Prefix_token_ids_equal_the_reference(string key)
    {
        var golden = GoldenData.Case(key);
        var goldenModel = GoldenData.Model(golden.Model);
        var model = TestModels.Load(golden.Model);

        int[] prefix = Enumerable.Repeat(goldenModel.ImageTokenId, model.ImageTokens).Concat(model.TokenizePrompt(golden.Prompt)).ToArray();

        Assert.Equal(golden.InputIds, prefix);
    }

    [Theory]
    [MemberData(nameof(CaseKeys))]
    public void Teacher_forced_logits_match_the_reference_in_exact_mode(string key)
    {
        double worst = MeasureTeacherForced(key, Precision.Exact);
        output.WriteLine($"{key}: exact mode, worst |Δlogit| over {Steps} steps = {worst:E3} (tolerance {ExactTolerance})");
        Assert.InRange(worst, 0, ExactTolerance);
    }

    [Theory]
    [MemberData(nameof(CaseKeys))]
    public void Teacher_forced_logits_stay_close_to_the_reference_in_fast_mode(string key)
    {
        double worst = MeasureTeacherForced(key, Precision.Fast);
        output.WriteLine($"{key}: fast mode, worst |Δlogit| over {Steps} steps = {worst:E3} (tolerance {FastTolerance})");
        Assert.InRange(worst, 0, FastTolerance);
    }

    [Theory]
    [MemberData(nameof(CaseKeys))]
    public void Free_running_greedy_generation_yields_the_reference_tokens(string key)
    {
        var golden = GoldenData.Case(key);
        var model = TestModels.Load(golden.Model);

        var result = model.Generate(new GenerationRequest(GoldenData.ImagePath(golden.Image), golden.Prompt), new GenerationOptions { MaxNewTokens = Steps });

        output.WriteLine($"{key}: {string.Join(",", result.Tokens)}");
        Assert.Equal(golden.GreedyTokens, result.Tokens);
        Assert.Equal(golden.GreedyText, result.Text);
    }

    /// <summary>Worst |Δ| between our logits and the reference's over the teacher-forced steps.</summary>
    private static double MeasureTeacherForced(string key, Precision precision)
    {
        var golden = GoldenData.Case(key);
        float[] reference = GoldenData.Tensor($"{key}/greedy_step_logits");
        var logits = TeacherForcing.Logits(TestModels.Load(golden.Model, precision), golden);

        double worst = 0;
        for (int step = 0; step < Steps; step++)
        {
            float[] expected = TeacherForcing.ReferenceLogits(golden, reference, step);
            Assert.Equal(expected.Length, logits[step].Length);
            worst = Math.Max(worst, logits[step].Zip(expected, (a, b) => Math.Abs(a - b)).Max());
        }

        return worst;
    }
}
