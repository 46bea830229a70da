using LLama.Native;
using LLama.Sampling;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Sampling in the order of the seed's <c>inference.py</c> and of transformers: top-k (when set),
/// then temperature, then top-p on the tempered distribution, then a seeded draw. LLamaSharp's
/// <see cref="DefaultSamplingPipeline"/> applies top-p before temperature, which keeps a different
/// nucleus whenever T ≠ 1 and p &lt; 1.
/// </summary>
internal sealed class SeedOrderSamplingPipeline(float temperature, float topP, int topK, uint seed) : BaseSamplingPipeline
{
    protected override SafeLLamaSamplerChainHandle CreateChain(SafeLLamaContextHandle context)
    {
        var chain = SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
        if (topK > 0)
        {
            chain.AddTopK(topK);
        }

        chain.AddTemperature(temperature);
        if (topP < 1)
        {
            chain.AddTopP(topP, 1);
        }

        chain.AddDistributionSampler(seed);
        return chain;
    }
}
