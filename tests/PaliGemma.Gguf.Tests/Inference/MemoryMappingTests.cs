using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// Memory mapping is chosen per file: llama.cpp repacks Q4_0/Q4_K tensors into a private copy at
/// load, so mapping those files holds them twice (measured at 3B shapes: 3.13 GiB mapped, 2.25 not).
/// </summary>
public sealed class MemoryMappingTests
{
    [Theory]
    [InlineData("f16", true)]
    [InlineData("q8_0", true)]
    [InlineData("q4_k_m", false)]
    [InlineData("q4_0", false)]
    public void The_text_model_is_mapped_unless_llama_cpp_repacks_it(string type, bool mapped)
    {
        var files = CheckpointConverter.Convert(SyntheticCheckpoint.WideGemma, new ConversionOptions
        {
            OutputDirectory = TestModels.NewFolder("mmap-" + type),
            TextType = OutputType.Parse(type, OutputType.TextTypes, "--outtype"),
            MmprojType = OutputType.F16,
        });

        using var model = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath);
        using var forced = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { MemoryMap = !mapped });

        Assert.Equal(mapped, model.MemoryMapped);
        Assert.Equal(!mapped, forced.MemoryMapped);
    }
}
