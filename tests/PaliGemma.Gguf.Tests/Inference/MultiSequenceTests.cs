using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// Several answers decoded together in one llama.cpp context, one sequence id each (every prefix in one
/// non-causal batch, then a batch of one token per answer per step), give token for token what one-at-a-time
/// decoding gives, on the trained model, whose answers differ per picture and prompt and end at different
/// lengths: a prefix that saw another sequence's rows, or a token batch mixed up between sequences, shows.
/// </summary>
public sealed class MultiSequenceTests(ITestOutputHelper output)
{
    /// <summary>Four pictures with one to three shapes, and prompts whose answers differ in words and length.</summary>
    private static readonly (string Picture, string Prompt)[] Pairs =
    [
        ("shapes_00", "caption en"),
        ("shapes_00", "detect triangle"),
        ("shapes_02", "caption en"),
        ("shapes_02", "answer en how many shapes?"),
        ("shapes_05", "detect circle"),
        ("shapes_05", "answer en what color is the circle?"),
        ("shapes_07", "caption en"),
    ];

    private static readonly GenerationOptions Greedy = new() { MaxNewTokens = 24 };

    private static readonly GenerationOptions Sampled = new() { MaxNewTokens = 12, DoSample = true, Temperature = 1.5f, TopP = 1f, Seed = 5 };

    public static TheoryData<Precision, bool> Settings => new()
    {
        { Precision.Exact, false },
        { Precision.Fast, false },
        { Precision.Exact, true },
    };

    [Theory]
    [MemberData(nameof(Settings))]
    public async Task Answers_decoded_together_have_the_tokens_of_answers_decoded_one_at_a_time(Precision precision, bool sampled)
    {
        var model = TestModels.LoadTrained(precision);
        var options = sampled ? Sampled : Greedy;
        var embeddings = new Dictionary<string, ImageEmbedding>();
        foreach (string picture in Pairs.Select(p => p.Picture).Distinct())
        {
            embeddings[picture] = await model.EmbedImageAsync(TrainedEval.Image(picture).Path);
        }

        var alone = new List<GenerationResult>();
        foreach (var (picture, prompt) in Pairs)
        {
            alone.Add(await model.GenerateAsync(embeddings[picture], prompt, options));
        }

        var together = await model.GenerateTogetherAsync([.. Pairs.Select(p => (embeddings[p.Picture], p.Prompt))], options);

        for (int i = 0; i < Pairs.Length; i++)
        {
            output.WriteLine($"{Pairs[i].Picture} | {Pairs[i].Prompt} | {alone[i].Text} | {together[i].Text}");
        }

        Assert.Equal(alone.Select(r => r.Tokens), together.Select(r => r.Tokens));
        Assert.Equal(alone.Select(r => r.StopReason), together.Select(r => r.StopReason));
        Assert.True(alone.Select(r => string.Join(',', r.Tokens)).Distinct().Count() >= 5, "the answers hardly differ: a mix-up would not show");
        Assert.True(alone.Select(r => r.Tokens.Count).Distinct().Count() >= 3, "the answers end together: a sequence leaving the batch early would not be tested");
    }

    [Fact]
    public async Task A_batch_decoded_in_groups_gives_the_results_of_one_at_a_time_in_order_with_refusals_in_place()
    {
        var files = TestModels.ConvertedTrained();
        string missing = Path.Combine(TestModels.NewFolder("groups"), "missing.png");
        BatchItem[] items =
        [
            new(TrainedEval.Image("shapes_00").Path, ["caption en", "detect triangle", "answer en how many shapes?"]),
            new(missing, ["caption en"]),
            new(TrainedEval.Image("shapes_05").Path, ["detect circle", "caption en"]),
            new(TrainedEval.Image("shapes_07").Path, ["caption en"]),
        ];

        var oneAtATime = await TestModels.LoadTrained(Precision.Fast).GenerateBatchAsync(items, Greedy).ToListAsync();
        using var grouped = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Precision = Precision.Fast, BatchSequences = 3 });
        var inGroups = await grouped.GenerateBatchAsync(items, Greedy).ToListAsync();

        Assert.Equal(oneAtATime.Select(r => (r.ImagePath, r.Prompt, r.Error is null)), inGroups.Select(r => (r.ImagePath, r.Prompt, r.Error is null)));
        Assert.Equal(oneAtATime.Select(r => r.Result?.Tokens ?? []), inGroups.Select(r => r.Result?.Tokens ?? []));
        Assert.Contains("missing.png", Assert.Single(inGroups, r => !r.Succeeded).Error, StringComparison.Ordinal);
    }

    [Fact]
    public void More_sequences_than_the_engine_allows_are_refused_in_one_line()
    {
        var files = TestModels.ConvertedTrained();
        var error = Assert.Throws<PaliGemmaException>(() => PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { BatchSequences = PaliGemmaModel.MaxSequencesTogether + 1 }));
        Assert.Contains("between 1 and", error.Message, StringComparison.Ordinal);
    }
}
