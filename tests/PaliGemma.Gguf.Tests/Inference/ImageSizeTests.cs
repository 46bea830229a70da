using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>PaliGemma comes at 224, 448 and 896 px: (S/14)^2 image tokens, all in the one non-causal prefix batch.</summary>
public sealed class ImageSizeTests
{
    [Theory]
    [InlineData(448, 1024)]
    [InlineData(896, 4096)]
    public void Larger_pictures_convert_and_run_with_more_image_tokens(int size, int tokens)
    {
        string checkpoint = SyntheticCheckpoint.Create(TestModels.NewFolder($"px{size}"), hidden: 64, ffn: 128, layers: 2, imageSize: size);
        var files = CheckpointConverter.Convert(checkpoint, new ConversionOptions { TextType = OutputType.F16, MmprojType = OutputType.F16 });
        using var model = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath);

        var result = model.Generate(new GenerationRequest(GoldenData.ImagePath("chelsea"), "caption en"), new GenerationOptions { MaxNewTokens = 2, IgnoreEndOfSequence = true });

        Assert.Equal(size, model.ImageSize);
        Assert.Equal(tokens, model.ImageTokens);
        Assert.Equal(tokens + 5, result.PromptTokens);
        Assert.Equal(2, result.Tokens.Count);
        Assert.Equal((451, 300), (result.Image.OriginalWidth, result.Image.OriginalHeight));
    }
}
