using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Inference;

public sealed class EmbeddingScaleProbeTests
{
    [Theory]
    [InlineData("tiny-paligemma-224")]
    [InlineData("tiny-paligemma2-224")]
    public void The_shipped_gemma_graphs_scale_embedding_inputs_too(string model)
    {
        var probe = TestModels.Load(model).ProbeResult;

        // Decoding BOS as an id and as its raw embedding row gives the same logits.
        Assert.True(probe.GraphScalesEmbeddings);
        Assert.InRange(probe.RawRowDifference, 0, 1e-3);
    }
}
