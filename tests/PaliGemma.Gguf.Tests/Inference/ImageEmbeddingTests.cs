using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// The vision tower once per picture: prompts answered from one <see cref="ImageEmbedding"/>, and the
/// batch API, give token for token what separate requests give. Sampling at a high temperature with
/// a fixed seed makes the random-weight golden models' answers depend on the prompt and the picture
/// (their greedy answers are mostly "\n"), so a prefix built from the wrong prompt or picture shows.
/// </summary>
public sealed class ImageEmbeddingTests(ITestOutputHelper output)
{
    private static readonly string[] Prompts = ["caption en", "detect cat", "answer en what is in the image?", "ocr"];

    private static readonly GenerationOptions Sampled = new() { MaxNewTokens = 10, DoSample = true, Temperature = 3f, TopP = 1f, Seed = 11, IgnoreEndOfSequence = true };

    public static TheoryData<string> Models => [.. GoldenData.Models.Select(m => m.Name)];

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Prompts_on_one_embedding_give_the_tokens_of_separate_requests(string name)
    {
        var model = TestModels.Load(name);
        string picture = GoldenData.ImagePath("chelsea");

        var embedding = await model.EmbedImageAsync(picture);
        var reused = new List<IReadOnlyList<int>>();
        foreach (string prompt in Prompts)
        {
            reused.Add((await model.GenerateAsync(embedding, prompt, Sampled)).Tokens);
        }

        var separate = Prompts.Select(p => model.Generate(new GenerationRequest(picture, p), Sampled).Tokens).ToList();
        output.WriteLine(string.Join("\n", separate.Select(t => string.Join(' ', t))));

        Assert.Equal(separate, reused);
        Assert.True(separate.Distinct(new SequenceComparer()).Count() > 1, "the prompts' answers do not differ: the test would not see a wrong prefix");
    }

    [Fact]
    public async Task A_batch_answers_each_picture_and_prompt_in_order_and_a_bad_picture_becomes_an_error()
    {
        var model = TestModels.Load("tiny-paligemma2-224");
        string missing = Path.Combine(TestModels.NewFolder("batch"), "missing.png");
        BatchItem[] items =
        [
            new(GoldenData.ImagePath("chelsea"), Prompts[..2]),
            new(missing, ["caption en"]),
            new(GoldenData.ImagePath("astronaut"), Prompts[1..3]),
        ];

        var results = await model.GenerateBatchAsync(items, Sampled).ToListAsync();

        var expected = items.SelectMany(i => i.Prompts.Select(p => (i.ImagePath, Prompt: p))).ToList();
        Assert.Equal(expected, results.Select(r => (r.ImagePath, r.Prompt)));
        var failed = Assert.Single(results, r => !r.Succeeded);
        Assert.Equal(missing, failed.ImagePath);
        Assert.Contains("missing.png", failed.Error, StringComparison.Ordinal);
        foreach (var result in results.Where(r => r.Succeeded))
        {
            Assert.Equal(model.Generate(new GenerationRequest(result.ImagePath, result.Prompt), Sampled).Tokens, result.Result!.Tokens);
        }

        var answers = results.Where(r => r.Succeeded).Select(r => r.Result!.Tokens).ToList();
        Assert.True(answers.Distinct(new SequenceComparer()).Count() > 1, "all answers are equal: the test would not see a mix-up");
    }

    [Fact]
    public async Task An_embedding_from_another_model_is_refused()
    {
        var one = TestModels.Load("tiny-paligemma2-224");
        var other = TestModels.Load("tiny-paligemma2-224", Precision.Fast);
        var embedding = await one.EmbedImageAsync(GoldenData.ImagePath("chelsea"));

        Assert.Throws<PaliGemmaException>(() => other.Generate(embedding, "caption en", Sampled));
    }

    private sealed class SequenceComparer : IEqualityComparer<IReadOnlyList<int>>
    {
        public bool Equals(IReadOnlyList<int>? x, IReadOnlyList<int>? y) => x!.SequenceEqual(y!);

        public int GetHashCode(IReadOnlyList<int> obj) => obj.Aggregate(17, (h, v) => (h * 31) + v);
    }
}
