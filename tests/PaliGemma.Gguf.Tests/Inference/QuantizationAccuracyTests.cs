using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// What each file type costs in accuracy, on every golden model and case (16 teacher-forced steps
/// each, exact mode): max |Δlogit| and top-1 agreement against the reference, and the KL divergence
/// of the next-token distribution from the F32 GGUF's. Prints one README table row per type, and
/// holds every row to a band around what it measured (see <see cref="KldFactor"/>).
/// </summary>
[Trait("Category", "Golden")]
public sealed class QuantizationAccuracyTests(ITestOutputHelper output)
{
    private const int Steps = TeacherForcing.Steps;

    /// <summary>Steps whose reference top-1 leads the runner-up by more than this must agree for Q8_0 and better.</summary>
    private const double RobustMargin = 0.1;

    /// <summary>
    /// What each row measured on the in-repository golden models (tests/fixtures/golden; 2 threads,
    /// AVX2; the figures repeat to the last printed digit from run to run): mean and max KLD against
    /// the F32 GGUF, max |Δlogit| against the reference, top-1 agreement out of 192 steps.
    /// </summary>
    private sealed record Measured(string Text, string Mmproj, double MeanKld, double MaxKld, double MaxDelta, int Agree);

    private static readonly Measured[] Rows =
    [
        new("f16", "f16", 5.26e-7, 1.59e-6, 0.0057, 192),
        new("bf16", "f16", 2.19e-5, 5.16e-5, 0.0375, 192),
        new("q8_0", "q8_0", 7.67e-4, 2.14e-3, 0.2620, 191),
        new("q6_k", "q8_0", 7.67e-4, 2.14e-3, 0.2620, 191), // 64-wide rows: Q6_K falls back to Q8_0, as in llama.cpp
        new("q5_k_m", "q8_0", 1.11e-2, 3.75e-2, 1.0990, 161),
        new("q5_0", "q8_0", 1.88e-2, 4.97e-2, 1.1860, 162),
        new("q4_k_m", "q8_0", 1.45e-2, 4.83e-2, 1.0968, 191),
        new("q4_k_s", "q8_0", 1.47e-2, 3.58e-2, 1.1222, 161),
        new("q4_0", "q8_0", 7.30e-2, 1.55e-1, 2.0267, 191),
    ];

    /// <summary>
    /// The bands around each measurement. A different thread count or SIMD path reorders ggml's F32
    /// sums, which moves logits by ~1e-5: far inside a factor of 2 on every KLD here (the smallest,
    /// F16's 5e-7, is quantization error, not rounding). The lower KLD bound catches a more precise
    /// type written in place of the one asked for (F16 for BF16 is 40x less, Q8_0 for Q6_K-fallbacks
    /// equal), the upper a less precise one (Q4_0 for Q5_0 is 3.9x more); types whose KLDs lie within
    /// 2x of each other (Q5_K_M/Q5_0, Q4_K_M/Q4_K_S) are told apart by the byte-identity test with
    /// llama_model_quantize instead. Agreement may lose 4 steps of 192 (the golden PaliGemma 2 cases
    /// have top-1 margins down to 0.004).
    /// </summary>
    private const double KldFactor = 2, DeltaFactor = 1.5;
    private const int AgreementSlack = 4;

    public static TheoryData<string, string> Types()
    {
        var data = new TheoryData<string, string>();
        foreach (var row in Rows)
        {
            data.Add(row.Text, row.Mmproj);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Accuracy_per_type(string textType, string mmprojType)
    {
        var text = OutputType.Parse(textType, OutputType.TextTypes, "--outtype");
        var mmproj = OutputType.Parse(mmprojType, OutputType.MmprojTypes, "--mmproj-type");
        double worst = 0, klSum = 0, klMax = 0;
        int steps = 0, agree = 0, robustSteps = 0, robustAgree = 0;
        foreach (var golden in GoldenData.Cases)
        {
            var model = TestModels.Load(golden.Model, Precision.Exact, text, mmproj);
            var f32 = TestModels.Load(golden.Model, Precision.Exact);
            float[] reference = GoldenData.Tensor($"{golden.Key}/greedy_step_logits");
            var ours = TeacherForcing.Logits(model, golden);
            var baseline = TeacherForcing.Logits(f32, golden);
            for (int step = 0; step < Steps; step++)
            {
                float[] expected = TeacherForcing.ReferenceLogits(golden, reference, step);
                worst = Math.Max(worst, ours[step].Zip(expected, (a, b) => Math.Abs(a - b)).Max());
                bool same = ArgMax(ours[step]) == ArgMax(expected);
                agree += same ? 1 : 0;
                steps++;
                if (Margin(expected) > RobustMargin)
                {
                    robustSteps++;
                    robustAgree += same ? 1 : 0;
                }

                double kl = KullbackLeibler(baseline[step], ours[step]);
                klSum += kl;
                klMax = Math.Max(klMax, kl);
            }
        }

        long size = new FileInfo(TestModels.Converted("tiny-paligemma2-224", text, mmproj).TextModelPath).Length;
        double meanKl = klSum / steps;
        output.WriteLine($"| {textType} | {mmprojType} | {worst:F4} | {100.0 * agree / steps:F1}% ({agree}/{steps}) | {100.0 * robustAgree / robustSteps:F1}% | {meanKl:E2} | {klMax:E2} | {size / 1024.0:F0} KiB |");

        if (text.DefaultType is GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0)
        {
            // F16, BF16 and Q8_0 round each weight by at most 2^-9 relative (Q8_0: 1/254 of a block's
            // largest): argmax must survive wherever the reference's lead exceeds 0.1, on any golden data.
            Assert.Equal(robustSteps, robustAgree);
        }

        if (!GoldenData.IsInRepository)
        {
            output.WriteLine($"PALIGEMMA_GOLDEN names another folder: the bands measured on tests/fixtures/golden do not apply to {GoldenData.Folder}");
            return;
        }

        var row = Rows.Single(r => r.Text == textType && r.Mmproj == mmprojType);
        Assert.True(steps == 192, $"the in-repository golden data has 12 cases of 16 steps, not {steps} steps");
        Assert.True(meanKl >= row.MeanKld / KldFactor && meanKl <= row.MeanKld * KldFactor, $"{textType}: mean KLD {meanKl:E2} outside [{row.MeanKld / KldFactor:E2}, {row.MeanKld * KldFactor:E2}] (measured {row.MeanKld:E2}, x/÷{KldFactor})");
        Assert.True(klMax <= row.MaxKld * KldFactor, $"{textType}: max KLD {klMax:E2} above {row.MaxKld * KldFactor:E2} (measured {row.MaxKld:E2}, x{KldFactor})");
        Assert.True(worst <= row.MaxDelta * DeltaFactor, $"{textType}: max |Δlogit| {worst:F4} above {row.MaxDelta * DeltaFactor:F4} (measured {row.MaxDelta:F4}, x{DeltaFactor})");
        Assert.True(agree >= row.Agree - AgreementSlack, $"{textType}: top-1 agreement {agree}/192 below {row.Agree - AgreementSlack} (measured {row.Agree}, -{AgreementSlack})");
    }

    private static int ArgMax(float[] values) => Array.IndexOf(values, values.Max());

    private static double Margin(float[] values)
    {
        var top = values.OrderDescending().Take(2).ToArray();
        return top[0] - top[1];
    }

    /// <summary>KL(P || Q) of the softmax distributions, in nats.</summary>
    private static double KullbackLeibler(float[] p, float[] q)
    {
        double[] lp = LogSoftmax(p), lq = LogSoftmax(q);
        double sum = 0;
        for (int i = 0; i < lp.Length; i++)
        {
            sum += Math.Exp(lp[i]) * (lp[i] - lq[i]);
        }

        return Math.Max(0, sum);
    }

    private static double[] LogSoftmax(float[] logits)
    {
        double max = logits.Max();
        double log = Math.Log(logits.Sum(v => Math.Exp(v - max))) + max;
        return logits.Select(v => v - log).ToArray();
    }
}
