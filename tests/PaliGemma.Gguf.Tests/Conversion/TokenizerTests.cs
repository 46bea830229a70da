using System.Text;
using LLama;
using LLama.Common;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Tests.Infrastructure;
using PaliGemma.Gguf.Tokenizer;
using Xunit;

namespace PaliGemma.Gguf.Tests.Conversion;

/// <summary>llama.cpp, loading the converted vocabulary, must tokenize exactly as the reference tokenizer.</summary>
public sealed class TokenizerTests
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var model in GoldenData.Models)
        {
            for (int i = 0; i < GoldenData.TokenizerCases.Count; i++)
            {
                data.Add(model.Name, i);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Llama_cpp_tokenizes_like_the_reference(string model, int index)
    {
        var (text, ids) = GoldenData.TokenizerCases[index];
        var weights = TestModels.Load(model).Weights;

        var tokens = weights.Tokenize(text, false, true, Encoding.UTF8).Select(t => (int)t);

        Assert.Equal(ids, tokens);
    }

    [Fact]
    public void Tokenizer_json_alone_gives_the_same_tokenization()
    {
        var golden = GoldenData.Model("tiny-paligemma-224");
        string copy = CheckpointCopier.Copy(golden.Directory, TestModels.NewFolder("json-only"), shards: 1);
        File.Delete(Path.Combine(copy, "tokenizer.model"));
        var result = CheckpointConverter.Convert(copy, new ConversionOptions { TextType = OutputType.F32, MmprojType = OutputType.F32 });

        using var weights = LLamaWeights.LoadFromFile(new ModelParams(result.TextModelPath) { LoadMode = LLama.Native.LLamaLoadMode.MemoryMap });
        foreach (var (text, ids) in GoldenData.TokenizerCases)
        {
            Assert.Equal(ids, weights.Tokenize(text, false, true, Encoding.UTF8).Select(t => (int)t));
        }
    }

    [Fact]
    public void The_vocabulary_has_the_special_ids_the_image_token_and_padding()
    {
        var golden = GoldenData.Model("tiny-paligemma2-224");
        var vocabulary = TokenizerLoader.Load(golden.Directory);
        var gguf = GgufFile.Open(TestModels.Converted(golden.Name).TextModelPath);
        var tokens = (string[])gguf.Metadata["tokenizer.ggml.tokens"].Value;
        var types = (int[])gguf.Metadata["tokenizer.ggml.token_type"].Value;

        Assert.Equal((2, 1, 3, 0), (vocabulary.BosId, vocabulary.EosId, vocabulary.UnknownId, vocabulary.PaddingId));
        Assert.False(vocabulary.AddSpacePrefix);
        Assert.Equal("<image>", tokens[golden.ImageTokenId]);
        Assert.Equal((int)TokenType.Control, types[golden.ImageTokenId]);
        Assert.Equal("[PAD2175]", tokens[^1]);
        Assert.Equal((int)TokenType.Unused, types[^1]);
        Assert.Equal("<loc0000>", tokens[1000]);
        Assert.Equal(false, gguf.Metadata["tokenizer.ggml.add_space_prefix"].Value);
    }
}
