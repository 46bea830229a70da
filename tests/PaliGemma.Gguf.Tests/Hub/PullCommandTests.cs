using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Hub;

/// <summary>
/// The programs against <see cref="FakeHub"/> (HF_ENDPOINT pointing at 127.0.0.1): a Hub name where
/// a model path is expected pulls, converts and answers in one command, and a second run uses the
/// cache without a single request; a gated repository is one error line with the licence URL.
/// </summary>
public sealed class PullCommandTests : IAsyncLifetime
{
    private FakeHub _hub = null!;

    public async Task InitializeAsync() => _hub = await FakeHub.StartAsync();

    public async Task DisposeAsync() => await _hub.DisposeAsync();

    // An empty variable counts as unset; no token of the machine's user may leak into the test.
    private Dictionary<string, string> Environment(string cache) => new()
    {
        ["HF_ENDPOINT"] = _hub.Endpoint,
        ["PALIGEMMA_CACHE"] = cache,
        ["HF_TOKEN"] = "",
        ["HF_HOME"] = Path.Combine(cache, "hf-home"),
        ["HF_TOKEN_PATH"] = "",
    };

    [Theory]
    [InlineData("--model")]
    [InlineData("--model-path")]
    public void A_hub_name_pulls_converts_and_answers_then_reuses_the_cache_without_requests(string option)
    {
        // The trained tiny model, in the Hub's layout: the answer is the reference's, not a constant.
        _hub.AddRepository("google/tiny-paligemma-shapes-224", TrainedEval.ModelDirectory);
        string cache = TestModels.NewFolder("cli-hub-cache");
        var golden = TrainedEval.DifferentAnswers(1, where: c => c.Task == "caption")[0];
        string[] arguments = ["run", option, "google/tiny-paligemma-shapes-224", "-i", golden.Image.Path, "-p", golden.Prompt, "-n", "24", "--exact"];

        var first = CliProcess.Run("paligemma", Environment(cache), arguments);
        Assert.True(first.ExitCode == 0, first.StandardError);
        Assert.Equal(golden.GreedyText + "\n", first.StandardOutput);
        Assert.Contains("downloading [", first.StandardError, StringComparison.Ordinal);
        Assert.Contains("checksum verified", first.StandardError, StringComparison.Ordinal);
        Assert.Contains("writing", first.StandardError, StringComparison.Ordinal);
        Assert.Contains(_hub.Requests, r => r.Path.EndsWith("/model.safetensors", StringComparison.Ordinal));

        _hub.ClearLog();
        var second = CliProcess.Run("paligemma", Environment(cache), arguments);
        Assert.True(second.ExitCode == 0, second.StandardError);
        Assert.Equal(golden.GreedyText + "\n", second.StandardOutput);
        Assert.Empty(_hub.Requests);
        Assert.DoesNotContain("downloading", second.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("writing", second.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void Pull_prints_the_gguf_paths_and_a_gated_repository_is_one_line_with_the_licence_url()
    {
        _hub.AddRepository("google/gated-tiny", GoldenData.Model("tiny-paligemma-224").Directory, gated: true);
        string cache = TestModels.NewFolder("cli-hub-gated");

        var refused = CliProcess.Run("paligemma", Environment(cache), "pull", "google/gated-tiny");
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"error: google/gated-tiny is gated: accept its licence at {_hub.Endpoint}/google/gated-tiny while logged in, then pass a token (--token or HF_TOKEN) from {_hub.Endpoint}/settings/tokens", refused.SingleErrorLine());

        var pulled = CliProcess.Run("paligemma", Environment(cache), "pull", "google/gated-tiny", "--token", FakeHub.GoodToken, "--outtype", "q8_0", "--mmproj-type", "q8_0");
        Assert.True(pulled.ExitCode == 0, pulled.StandardError);
        string[] paths = pulled.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["gated-tiny.q8_0.gguf", "gated-tiny.mmproj.q8_0.gguf"], paths.Select(Path.GetFileName));
        Assert.All(paths, p => Assert.StartsWith(Path.Combine(cache, "hub", "models--google--gated-tiny", "snapshots"), p, StringComparison.Ordinal));
        Assert.All(paths, p => Assert.True(File.Exists(p)));
    }

    [Fact]
    public void A_lora_adapter_repository_pulls_its_base_and_merges_like_paligemma_convert_lora()
    {
        string baseFolder = GoldenData.Model("tiny-paligemma-224").Directory;
        var modules = LoraAdapterWriter.RandomFactors(baseFolder, ["language_model.model.layers.0.self_attn.q_proj", "multi_modal_projector.linear"], 4);
        string adapter = LoraAdapterWriter.Write(TestModels.NewFolder("hub-lora"), modules, 4, 8);
        _hub.AddRepository("google/tiny-paligemma-224", baseFolder);
        _hub.AddRepository("someone/tiny-lora", adapter);
        string cache = TestModels.NewFolder("cli-hub-lora");

        var pulled = CliProcess.Run("paligemma", Environment(cache), "pull", "someone/tiny-lora", "--outtype", "f32", "--mmproj-type", "f32");
        Assert.True(pulled.ExitCode == 0, pulled.StandardError);
        string[] paths = pulled.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(_hub.Requests, r => r.Path.EndsWith("/adapter_model.safetensors", StringComparison.Ordinal));
        Assert.Contains(_hub.Requests, r => r.Path.EndsWith("/model-00001-of-00002.safetensors", StringComparison.Ordinal));

        var expected = CheckpointConverter.Convert(baseFolder, new ConversionOptions { OutputDirectory = TestModels.NewFolder("hub-lora-expected"), Name = "tiny-lora", TextType = OutputType.F32, MmprojType = OutputType.F32, LoraAdapterDirectory = adapter });
        Assert.Equal(File.ReadAllBytes(expected.TextModelPath), File.ReadAllBytes(paths[0]));
        Assert.Equal(File.ReadAllBytes(expected.MmprojPath), File.ReadAllBytes(paths[1]));

        _hub.ClearLog();
        var run = CliProcess.Run("paligemma", Environment(cache), "run", "--model", "someone/tiny-lora", "--outtype", "f32", "--mmproj-type", "f32", "-i", GoldenData.ImagePath("chelsea"), "-p", "caption en", "-n", "2");
        Assert.True(run.ExitCode == 0, run.StandardError);
        Assert.Empty(_hub.Requests);
        Assert.DoesNotContain("writing", run.StandardError, StringComparison.Ordinal);
    }
}
