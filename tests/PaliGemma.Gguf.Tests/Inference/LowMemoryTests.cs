using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// Low-memory mode on the trained model: the vision tower (initialised against a vocabulary-only load of the text
/// model) and the text model are never in memory together, the answers are token for token the normal mode's, and
/// a batch switches between them once per chunk of pictures, not once per picture. The vocabulary-only load mtmd is
/// initialised against goes while the text weights (which carry their own) are in memory, and tokenizing on other
/// threads goes on safely through the swaps.
/// </summary>
public sealed class LowMemoryTests
{
    private static readonly GenerationOptions Greedy = new() { MaxNewTokens = 24 };

    [Fact]
    public async Task The_two_parts_take_turns_and_the_answers_are_the_normal_modes()
    {
        var files = TestModels.ConvertedTrained();
        var normal = TestModels.LoadTrained(Precision.Fast);
        using var low = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Precision = Precision.Fast, LowMemory = true });
        Assert.Equal((false, true, true), (low.NativeParts.Text, low.NativeParts.Vision, low.NativeParts.VocabularyOnly));

        string picture = TrainedEval.Image("shapes_05").Path;
        var embedding = await low.EmbedImageAsync(picture);
        Assert.Equal((false, true), (low.NativeParts.Text, low.NativeParts.Vision));

        var answer = await low.GenerateAsync(embedding, "detect circle", Greedy);
        Assert.Equal((true, false, false), (low.NativeParts.Text, low.NativeParts.Vision, low.NativeParts.VocabularyOnly));
        Assert.Equal((await normal.GenerateAsync(new GenerationRequest(picture, "detect circle"), Greedy)).Tokens, answer.Tokens);

        // A request with the picture itself: the vision tower comes back for it, then the text model.
        var whole = await low.GenerateAsync(new GenerationRequest(TrainedEval.Image("shapes_02").Path, "caption en"), Greedy);
        Assert.Equal((true, false, false), (low.NativeParts.Text, low.NativeParts.Vision, low.NativeParts.VocabularyOnly));
        Assert.Equal((2, 1), (low.NativeParts.TextLoads, low.NativeParts.VisionLoads));
        Assert.Equal((await normal.GenerateAsync(new GenerationRequest(TrainedEval.Image("shapes_02").Path, "caption en"), Greedy)).Tokens, whole.Tokens);
        Assert.True(low.LoadTime > TimeSpan.Zero);
    }

    [Fact]
    public async Task A_batch_switches_once_per_chunk_of_pictures_and_answers_as_the_normal_mode()
    {
        var files = TestModels.ConvertedTrained();
        BatchItem[] items =
        [
            new(TrainedEval.Image("shapes_00").Path, ["caption en", "detect triangle"]),
            new(TrainedEval.Image("shapes_05").Path, ["answer en how many shapes?", "detect circle"]),
            new(TrainedEval.Image("shapes_07").Path, ["caption en"]),
        ];
        var expected = await TestModels.LoadTrained(Precision.Fast).GenerateBatchAsync(items, Greedy).ToListAsync();

        using var low = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Precision = Precision.Fast, LowMemory = true });
        var answers = await low.GenerateBatchAsync(items, Greedy).ToListAsync();

        Assert.Equal(expected.Select(r => r.Result!.Tokens), answers.Select(r => r.Result!.Tokens));
        // Three pictures fit one chunk: the text model loads once, after all three went through the vision tower.
        Assert.Equal((1, 0), (low.NativeParts.TextLoads, low.NativeParts.VisionLoads));
        Assert.True(answers.Select(r => string.Join(',', r.Result!.Tokens)).Distinct().Count() >= 4, "the answers hardly differ: a mix-up would not show");
    }

    [Fact]
    public async Task Tokenizing_on_another_thread_is_safe_while_the_parts_swap()
    {
        var files = TestModels.ConvertedTrained();
        const string Prompt = "answer en what color is the square?";
        using var low = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Precision = Precision.Fast, LowMemory = true });
        int[] expected = low.TokenizePrompt(Prompt);

        using var stop = new CancellationTokenSource();
        var tokenizer = Task.Run(() =>
        {
            int calls = 0;
            while (!stop.IsCancellationRequested)
            {
                Assert.Equal(expected, low.TokenizePrompt(Prompt));
                calls++;
            }

            return calls;
        });
        // Four requests, each bringing the vision tower back and then the text model: eight swaps under the tokenizer.
        foreach (string id in new[] { "shapes_00", "shapes_02", "shapes_05", "shapes_07" })
        {
            await low.GenerateAsync(new GenerationRequest(TrainedEval.Image(id).Path, "caption en"), Greedy);
        }

        await stop.CancelAsync();
        int tokenized = await tokenizer;
        Assert.Equal((4, 3), (low.NativeParts.TextLoads, low.NativeParts.VisionLoads));
        Assert.True(tokenized > 100, $"only {tokenized} tokenizations ran beside the swaps");
    }
}
