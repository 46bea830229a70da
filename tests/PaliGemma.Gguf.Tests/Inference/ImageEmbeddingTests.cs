using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// The vision tower once per picture: prompts answered from an <see cref="ImageEmbedding"/>, and the
/// batch API, give token for token what separate requests give and what the float32 reference
/// answers. On the trained tiny model, with two pictures whose answers to the same prompt differ, so
/// a prefix built from the wrong picture or prompt shows.
/// </summary>
[Trait("Category", "Trained")]
public sealed class ImageEmbeddingTests(ITestOutputHelper output)
{
    private static readonly GenerationOptions Greedy = new() { MaxNewTokens = TrainedEval.MaxNewTokens };

    private static PaliGemmaModel Model => TestModels.LoadTrained();

    /// <summary>Two pictures whose captions differ, and the cases on them the reference answers without a near-tie.</summary>
    private static List<TrainedCase> TwoPictures()
    {
        var pictures = TrainedEval.DifferentAnswers(2, where: c => c.Prompt == "caption en").Select(c => c.Image).ToList();
        var cases = TrainedEval.WholeCases.Where(c => pictures.Contains(c.Image)).ToList();

        // Alternate the pictures, so that answering every prompt from the first or the last embedding fails.
        return [.. cases.OrderBy(c => cases.Where(o => o.Image == c.Image).ToList().IndexOf(c)).ThenBy(c => pictures.IndexOf(c.Image))];
    }

    [Fact]
    public async Task Prompts_on_the_embeddings_of_two_pictures_give_the_reference_answers_of_separate_requests()
    {
        var cases = TwoPictures();
        var embeddings = new Dictionary<TrainedImage, ImageEmbedding>();
        foreach (var picture in cases.Select(c => c.Image).Distinct())
        {
            embeddings[picture] = await Model.EmbedImageAsync(picture.Path);
        }

        foreach (var c in cases)
        {
            var reused = await Model.GenerateAsync(embeddings[c.Image], c.Prompt, Greedy);
            var separate = Model.Generate(c.Request, Greedy);
            output.WriteLine($"{c.Key}: \"{reused.Text}\"");

            Assert.Equal(TrainedEval.TokensWithEnd(separate), TrainedEval.TokensWithEnd(reused));
            Assert.Equal(c.GreedyTokens, TrainedEval.TokensWithEnd(reused));
            Assert.Equal(0.0, reused.Timings.ImageEncodeMs);
        }

        Assert.True(
            cases.Any(a => cases.Any(b => a.Image != b.Image && a.Prompt == b.Prompt && a.GreedyText != b.GreedyText)),
            "no prompt is answered differently on the two pictures: the test would not see the wrong picture");
    }

    [Fact]
    public async Task A_batch_answers_each_picture_and_prompt_in_order_and_a_bad_picture_becomes_an_error()
    {
        var cases = TwoPictures();
        var pictures = cases.Select(c => c.Image).Distinct().ToList();
        string missing = Path.Combine(TestModels.NewFolder("batch"), "missing.png");
        string[] Prompts(TrainedImage picture) => [.. cases.Where(c => c.Image == picture).Select(c => c.Prompt)];

        // The first picture comes back after the second, so answering from the picture embedded ahead shows.
        BatchItem[] items =
        [
            new(pictures[0].Path, Prompts(pictures[0])),
            new(missing, ["caption en"]),
            new(pictures[1].Path, Prompts(pictures[1])),
            new(pictures[0].Path, Prompts(pictures[0])),
        ];

        var results = await Model.GenerateBatchAsync(items, Greedy).ToListAsync();

        var expected = items.SelectMany(i => i.Prompts.Select(p => (i.ImagePath, Prompt: p))).ToList();
        Assert.Equal(expected, results.Select(r => (r.ImagePath, r.Prompt)));
        var failed = Assert.Single(results, r => !r.Succeeded);
        Assert.Equal(missing, failed.ImagePath);
        Assert.Contains("missing.png", failed.Error, StringComparison.Ordinal);
        foreach (var result in results.Where(r => r.Succeeded))
        {
            var c = cases.Single(c => c.Image.Path == result.ImagePath && c.Prompt == result.Prompt);
            Assert.Equal(c.GreedyTokens, TrainedEval.TokensWithEnd(result.Result!));
            Assert.Equal(TrainedEval.TokensWithEnd(Model.Generate(c.Request, Greedy)), TrainedEval.TokensWithEnd(result.Result!));
        }

        Assert.True(cases.Select(c => c.GreedyText).Distinct().Count() > 1, "all answers are equal: the test would not see a mix-up");
    }

    [Fact]
    public async Task An_embedding_from_another_model_is_refused()
    {
        var other = TestModels.LoadTrained(Precision.Fast);
        var embedding = await Model.EmbedImageAsync(TwoPictures()[0].Image.Path);

        Assert.Throws<PaliGemmaException>(() => other.Generate(embedding, "caption en", Greedy));
    }
}
