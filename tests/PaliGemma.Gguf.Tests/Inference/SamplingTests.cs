using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// The sampling parameters, mapped onto llama.cpp's sampler chain, and the ways a generation ends
/// (budget, stream, cancellation, parallel callers), on the trained tiny model
/// (tests/fixtures/trained): its answers differ from picture to picture and prompt to prompt and are
/// compared with the float32 reference's, so a pipeline that printed the same thing for every request
/// (the random golden models print newlines) fails here.
/// </summary>
[Trait("Category", "Trained")]
public sealed class SamplingTests(ITestOutputHelper output)
{
    /// <summary>The longest answer the reference gives without a near-tie anywhere (a 24-token caption in the repository's set).</summary>
    private static readonly TrainedCase Case = TrainedEval.LongestWholeAnswer;

    private static PaliGemmaModel Model => TestModels.LoadTrained();

    private static GenerationOptions Budget => new() { MaxNewTokens = TrainedEval.MaxNewTokens };

    private static IReadOnlyList<int> Run(GenerationOptions options) => Model.Generate(Case.Request, options).Tokens;

    [Fact]
    public void Greedy_is_the_default()
    {
        foreach (var c in TrainedEval.DifferentAnswers(3))
        {
            Assert.Equal(c.GreedyTokens, TrainedEval.TokensWithEnd(Model.Generate(c.Request, Budget)));
        }
    }

    [Theory]
    [InlineData(0f, 0.9f, 0)] // temperature 0
    [InlineData(1.5f, 0f, 0)] // top-p 0 keeps only the best token
    [InlineData(1.5f, 1f, 1)] // top-k 1
    public void Degenerate_sampling_settings_equal_greedy(float temperature, float topP, int topK)
    {
        var options = Budget with { DoSample = true, Temperature = temperature, TopP = topP, TopK = topK, Seed = 7 };

        var tokens = Run(options);
        var lifted = Run(options with { Temperature = Math.Max(temperature, 1.5f), TopP = 1, TopK = 0 });

        Assert.Equal(Case.AnswerTokens, tokens);
        // The same draw with the degenerate setting lifted is not greedy: the setting made it so.
        Assert.NotEqual(Case.AnswerTokens, lifted);
    }

    [Fact]
    public void The_same_seed_gives_the_same_sample_and_another_seed_another()
    {
        var options = Budget with { DoSample = true, Temperature = 1f, TopP = 1f, Seed = 42 };

        var first = Run(options);
        var again = Run(options);
        var other = Run(options with { Seed = 43 });
        output.WriteLine($"seed 42: {Model.Generate(Case.Request, options).Text}\nseed 43: {Model.Generate(Case.Request, options with { Seed = 43 }).Text}\ngreedy: {Case.GreedyText}");

        Assert.Equal(first, again);
        Assert.NotEqual(first, other);
        Assert.NotEqual(Case.AnswerTokens, first);
    }

    [Fact]
    public void Top_k_restricts_every_draw_to_the_k_best_tokens()
    {
        var image = ImagePreprocessor.Load(Case.Image.Path, Model.ImageSize);
        int[] text = Model.TokenizePrompt(Case.Prompt);
        float[] logits = Model.OnModelThread(() =>
        {
            using var decoder = Model.CreateDecoder(Model.ImageTokens + text.Length, 1);
            return decoder.DecodePrefix(Model.BuildPrefix(image, text, out _), Model.ImageTokens + text.Length).ToArray();
        });
        var topThree = logits.Select((l, i) => (l, i)).OrderByDescending(p => p.l).Take(3).Select(p => p.i).ToHashSet();

        var drawn = new HashSet<int>();
        for (uint seed = 0; seed < 20; seed++)
        {
            var first = Run(new GenerationOptions { MaxNewTokens = 1, DoSample = true, Temperature = 50f, TopP = 1f, TopK = 3, Seed = seed });
            Assert.Contains(first[0], topThree);
            drawn.Add(first[0]);
        }

        Assert.True(drawn.Count > 1, "every draw gave the same token: the test would not see a wider draw");
    }

    [Fact]
    public void Generation_stops_at_the_token_budget_and_excludes_the_prompt()
    {
        var result = Model.Generate(Case.Request, new GenerationOptions { MaxNewTokens = 5 });

        Assert.Equal(Case.AnswerTokens[..5], result.Tokens);
        Assert.Equal(StopReason.MaxTokens, result.StopReason);
        Assert.Equal(Case.InputIds.Length, result.PromptTokens);
        Assert.DoesNotContain(Case.Prompt, result.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Streaming_yields_the_tokens_and_text_of_generating()
    {
        foreach (var c in TrainedEval.DifferentAnswers(3))
        {
            var streamed = Model.StreamAsync(c.Request, Budget).ToBlockingEnumerable().ToList();
            var generated = Model.Generate(c.Request, Budget);

            Assert.Equal(c.AnswerTokens, streamed.Select(t => t.Id));
            Assert.Equal(generated.Tokens, streamed.Select(t => t.Id));
            Assert.Equal(generated.Text, string.Concat(streamed.Select(t => t.Text)));
            Assert.Equal(c.GreedyText, generated.Text);
        }
    }

    [Fact]
    public async Task Leaving_a_stream_early_stops_its_generation_and_frees_the_model()
    {
        int seen = 0;
        await foreach (var token in Model.StreamAsync(Case.Request, new GenerationOptions { MaxNewTokens = 7000, IgnoreEndOfSequence = true }))
        {
            if (++seen == 2)
            {
                break;
            }
        }

        // The abandoned 7000-token request no longer holds the model: the next one runs at once.
        var other = TrainedEval.WholeCases.First(c => c.GreedyTokens[0] != Case.GreedyTokens[0]);
        var next = await Model.GenerateAsync(other.Request, new GenerationOptions { MaxNewTokens = 1 }).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(other.GreedyTokens.Take(1), next.Tokens);
    }

    [Fact]
    public void Cancellation_stops_generation_and_keeps_what_was_generated()
    {
        using var cancellation = new CancellationTokenSource();
        int seen = 0;

        var result = Model.Generate(Case.Request, Budget, _ =>
        {
            if (++seen == 3)
            {
                cancellation.Cancel();
            }
        }, cancellation.Token);

        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.Equal(Case.AnswerTokens[..3], result.Tokens);
        Assert.Equal(Model.Generate(Case.Request, new GenerationOptions { MaxNewTokens = 3 }).Text, result.Text);
    }

    [Fact]
    public void Parallel_requests_give_the_sequential_greedy_outputs()
    {
        var cases = TrainedEval.DifferentAnswers(8);
        var sequential = cases.Select(c => TrainedEval.TokensWithEnd(Model.Generate(c.Request, Budget))).ToList();

        var parallel = cases.AsParallel().AsOrdered().WithDegreeOfParallelism(4)
            .Select(c => TrainedEval.TokensWithEnd(Model.GenerateAsync(c.Request, Budget).Result))
            .ToList();

        Assert.Equal(sequential, parallel);
        Assert.Equal(cases.Select(c => c.GreedyTokens), sequential);
    }

    [Theory]
    [InlineData(-1, 0.8f, 0.9f, 0)]
    [InlineData(10, -0.5f, 0.9f, 0)]
    [InlineData(10, 0.8f, 1.5f, 0)]
    [InlineData(10, 0.8f, 0.9f, -3)]
    public void Invalid_options_are_refused(int maxTokens, float temperature, float topP, int topK)
    {
        var options = new GenerationOptions { MaxNewTokens = maxTokens, DoSample = true, Temperature = temperature, TopP = topP, TopK = topK };

        Assert.Throws<PaliGemmaException>(() => Model.Generate(Case.Request, options));
    }

    [Fact]
    public void A_prompt_that_does_not_fit_the_context_is_a_clear_error()
    {
        var error = Assert.Throws<PaliGemmaException>(() => Model.Generate(Case.Request, new GenerationOptions { MaxNewTokens = 100_000 }));

        Assert.Contains("context", error.Message, StringComparison.Ordinal);
    }
}
