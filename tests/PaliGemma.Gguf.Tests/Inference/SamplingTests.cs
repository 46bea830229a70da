using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>The sampling parameters, mapped onto llama.cpp's sampler chain, on the golden PaliGemma 2 model.</summary>
public sealed class SamplingTests
{
    private static readonly GoldenCase Case = GoldenData.Case("tiny-paligemma2-224/chelsea/caption_en");

    private static PaliGemmaModel Model => TestModels.Load(Case.Model);

    private static GenerationRequest Request => new(GoldenData.ImagePath(Case.Image), Case.Prompt);

    private static IReadOnlyList<int> Run(GenerationOptions options) => Model.Generate(Request, options).Tokens;

    [Fact]
    public void Greedy_is_the_default()
    {
        Assert.Equal(Case.GreedyTokens, Run(new GenerationOptions { MaxNewTokens = 16 }));
    }

    [Theory]
    [InlineData(0f, 0.9f, 0)] // temperature 0
    [InlineData(1.5f, 0f, 0)] // top-p 0 keeps only the best token
    [InlineData(1.5f, 1f, 1)] // top-k 1
    public void Degenerate_sampling_settings_equal_greedy(float temperature, float topP, int topK)
    {
        var tokens = Run(new GenerationOptions { MaxNewTokens = 16, DoSample = true, Temperature = temperature, TopP = topP, TopK = topK, Seed = 7 });

        Assert.Equal(Case.GreedyTokens, tokens);
    }

    [Fact]
    public void The_same_seed_gives_the_same_sample_and_another_seed_another()
    {
        var options = new GenerationOptions { MaxNewTokens = 24, DoSample = true, Temperature = 3f, TopP = 1f, Seed = 42 };

        var first = Run(options);
        var again = Run(options);
        var other = Run(options with { Seed = 43 });

        Assert.Equal(first, again);
        Assert.NotEqual(first, other);
        Assert.NotEqual(Case.GreedyTokens.Take(first.Count), first);
    }

    [Fact]
    public void Top_k_restricts_every_draw_to_the_k_best_tokens()
    {
        var image = ImagePreprocessor.Load(GoldenData.ImagePath(Case.Image), Model.ImageSize);
        int[] text = Model.TokenizePrompt(Case.Prompt);
        using var decoder = Model.CreateDecoder(Model.ImageTokens + text.Length, 1);
        float[] logits = decoder.DecodePrefix(Model.BuildPrefix(image, text, out _), Model.ImageTokens + text.Length).ToArray();
        var topThree = logits.Select((l, i) => (l, i)).OrderByDescending(p => p.l).Take(3).Select(p => p.i).ToHashSet();

        for (uint seed = 0; seed < 20; seed++)
        {
            var first = Run(new GenerationOptions { MaxNewTokens = 1, DoSample = true, Temperature = 50f, TopP = 1f, TopK = 3, Seed = seed });
            Assert.Contains(first[0], topThree);
        }
    }

    [Fact]
    public void Generation_stops_at_the_token_budget_and_excludes_the_prompt()
    {
        var result = Model.Generate(Request, new GenerationOptions { MaxNewTokens = 5 });

        Assert.Equal(5, result.Tokens.Count);
        Assert.Equal(StopReason.MaxTokens, result.StopReason);
        Assert.Equal(Case.InputIds.Length, result.PromptTokens);
        Assert.DoesNotContain(Case.Prompt, result.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Streaming_yields_the_same_tokens_as_generating()
    {
        var streamed = Model.StreamAsync(Request, new GenerationOptions { MaxNewTokens = 16 }).ToBlockingEnumerable().Select(t => t.Id).ToList();

        Assert.Equal(Case.GreedyTokens, streamed);
    }

    [Fact]
    public async Task Leaving_a_stream_early_stops_its_generation_and_frees_the_model()
    {
        int seen = 0;
        await foreach (var token in Model.StreamAsync(Request, new GenerationOptions { MaxNewTokens = 7000 }))
        {
            if (++seen == 2)
            {
                break;
            }
        }

        // The abandoned 7000-token request no longer holds the model: the next one runs at once.
        var next = await Model.GenerateAsync(Request, new GenerationOptions { MaxNewTokens = 1 }).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(Case.GreedyTokens.Take(1), next.Tokens);
    }

    [Fact]
    public void Cancellation_stops_generation_and_keeps_what_was_generated()
    {
        using var cancellation = new CancellationTokenSource();
        int seen = 0;

        var result = Model.Generate(Request, new GenerationOptions { MaxNewTokens = 100 }, _ =>
        {
            if (++seen == 3)
            {
                cancellation.Cancel();
            }
        }, cancellation.Token);

        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.Equal(Case.GreedyTokens.Take(3), result.Tokens);
    }

    [Fact]
    public void Parallel_requests_give_the_sequential_greedy_outputs()
    {
        var cases = GoldenData.Model(Case.Model).Cases;
        var sequential = cases.Select(c => Model.Generate(new GenerationRequest(GoldenData.ImagePath(c.Image), c.Prompt), new GenerationOptions { MaxNewTokens = 16 }).Tokens).ToList();

        var parallel = cases.AsParallel().WithDegreeOfParallelism(4)
            .Select(c => Model.GenerateAsync(new GenerationRequest(GoldenData.ImagePath(c.Image), c.Prompt), new GenerationOptions { MaxNewTokens = 16 }).Result.Tokens)
            .ToList();

        Assert.Equal(sequential, parallel);
        Assert.Equal(cases.Select(c => (IReadOnlyList<int>)c.GreedyTokens), sequential);
    }

    [Theory]
    [InlineData(-1, 0.8f, 0.9f, 0)]
    [InlineData(10, -0.5f, 0.9f, 0)]
    [InlineData(10, 0.8f, 1.5f, 0)]
    [InlineData(10, 0.8f, 0.9f, -3)]
    public void Invalid_options_are_refused(int maxTokens, float temperature, float topP, int topK)
    {
        var options = new GenerationOptions { MaxNewTokens = maxTokens, DoSample = true, Temperature = temperature, TopP = topP, TopK = topK };

        Assert.Throws<PaliGemmaException>(() => Model.Generate(Request, options));
    }

    [Fact]
    public void A_prompt_that_does_not_fit_the_context_is_a_clear_error()
    {
        var error = Assert.Throws<PaliGemmaException>(() => Model.Generate(Request, new GenerationOptions { MaxNewTokens = 100_000 }));

        Assert.Contains("context", error.Message, StringComparison.Ordinal);
    }
}
