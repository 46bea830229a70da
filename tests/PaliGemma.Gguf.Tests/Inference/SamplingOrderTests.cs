using LLama.Native;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Native;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// Draws tokens from fixed logits through the real llama.cpp sampler chain and compares the counts
/// with the seed's distribution: softmax(logits / T), the smallest nucleus whose mass reaches p,
/// renormalised. The logits are chosen so that top-p applied before temperature (LLamaSharp's
/// default order) keeps five tokens where the seed's order keeps three.
/// </summary>
public sealed class SamplingOrderTests(ITestOutputHelper output)
{
    private const int Draws = 6000;

    private static readonly float[] Logits = [2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -1.5f];

    [Theory]
    [InlineData(0.5f, 0.9f)]
    [InlineData(1.0f, 0.9f)]
    [InlineData(2.0f, 1.0f)]
    [InlineData(0.8f, 0.6f)]
    public void Draws_follow_temperature_then_top_p(float temperature, float topP)
    {
        double[] expected = SeedDistribution(temperature, topP);
        int[] counts = Draw(new SeedOrderSamplingPipeline(temperature, topP, topK: 0, seed: 1234));

        for (int token = 0; token < Logits.Length; token++)
        {
            double frequency = (double)counts[token] / Draws;
            // Five standard deviations of a binomial frequency (plus one count): a correct chain
            // misses it for about one seed in a million (the seed is fixed, so the run repeats),
            // a wrong nucleus or temperature misses it by far.
            double bound = (5 * Math.Sqrt(expected[token] * (1 - expected[token]) / Draws)) + (1.0 / Draws);
            output.WriteLine($"T={temperature} p={topP} token {token}: expected {expected[token]:F4}, drawn {frequency:F4} (bound ±{bound:F4})");
            Assert.InRange(frequency, expected[token] - bound, expected[token] + bound);
        }
    }

    [Fact]
    public void Temperature_and_top_p_change_the_distribution()
    {
        int[] cold = Draw(new SeedOrderSamplingPipeline(0.5f, 1.0f, 0, 7));
        int[] hot = Draw(new SeedOrderSamplingPipeline(2.0f, 1.0f, 0, 7));
        int[] nucleus = Draw(new SeedOrderSamplingPipeline(1.0f, 0.5f, 0, 7));

        Assert.True(cold[0] > hot[0] * 2, $"T=0.5 should favour the best token far more than T=2 ({cold[0]} vs {hot[0]})");
        Assert.True(hot[^1] > 0, "T=2 with p=1 reaches the least likely token");
        Assert.Equal(0, nucleus.Skip(2).Sum());
    }

    private static int[] Draw(SeedOrderSamplingPipeline pipeline)
    {
        NativeLibraries.EnsureLoaded();
        using (pipeline)
        {
            var counts = new int[Logits.Length];
            for (int i = 0; i < Draws; i++)
            {
                var array = LLamaTokenDataArray.Create(Logits);
                using (LLamaTokenDataArrayNative.Create(array, out var native))
                {
                    // The chain ignores the context: it is built from the sampler parameters alone.
                    pipeline.Apply(null!, ref native);
                    counts[(int)native.Data[(int)native.Selected].ID]++;
                }
            }

            return counts;
        }
    }

    private static double[] SeedDistribution(float temperature, float topP)
    {
        double[] p = Logits.Select(l => Math.Exp(l / temperature)).ToArray();
        double sum = p.Sum();
        p = p.Select(v => v / sum).ToArray();

        // The logits are sorted, best first: keep tokens until their mass reaches top-p.
        var kept = new double[p.Length];
        double mass = 0;
        for (int i = 0; i < p.Length && (i == 0 || mass < topP); i++)
        {
            kept[i] = p[i];
            mass += p[i];
        }

        return kept.Select(v => v / mass).ToArray();
    }
}
