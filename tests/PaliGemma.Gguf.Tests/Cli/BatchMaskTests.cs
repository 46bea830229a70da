using System.Text;
using System.Text.Json;
using PaliGemma.Cli;
using PaliGemma.Cli.Batch;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tests.Infrastructure;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;

namespace PaliGemma.Gguf.Tests.Cli;

/// <summary>
/// <c>paligemma batch</c> lines carry masks as <c>run --json</c> does. No model here answers "segment ...", so the
/// reference answers go through the line writer batch uses, with the reference decoder: each line's "objects" is
/// byte for byte what <c>paligemma annotate --json</c> (run's JSON writer) prints for that answer, and its masks
/// decode to the reference box masks placed in the picture.
/// </summary>
public sealed class BatchMaskTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("paligemma-batch-masks-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Theory]
    [MemberData(nameof(SegmentationGolden.AnswerKeys), MemberType = typeof(SegmentationGolden))]
    public void A_line_has_the_objects_and_masks_run_json_gives(string key)
    {
        AnswerCase golden = SegmentationGolden.Answer(key);
        var masks = new MaskSource(SegmentationGolden.VaePath);

        using var line = JsonDocument.Parse(BatchCommand.Line(Answer(golden), TestModels.LoadTrained(), masks));

        string picture = SegmentationGolden.BlankPicture(Path.Combine(_folder, $"{key}.png"), golden);

        var annotate = CliProcess.Run("paligemma", "annotate", picture, "--text", golden.Answer, "--vae", SegmentationGolden.VaePath, "--json");
        Assert.True(annotate.ExitCode == 0, annotate.StandardError);
        using var run = JsonDocument.Parse(annotate.StandardOutput);
        Assert.Equal(run.RootElement.GetProperty("objects").GetRawText(), line.RootElement.GetProperty("objects").GetRawText());

        var objects = line.RootElement.GetProperty("objects").EnumerateArray().ToList();
        Assert.Equal(golden.Objects.Count, objects.Count);
        foreach (AnswerObject expected in golden.Objects)
        {
            Assert.Equal(expected.HasMask, objects[expected.Index].TryGetProperty("mask", out JsonElement mask));
            if (expected.HasMask)
            {
                byte[] placed = SegmentationGolden.PlacedBoxMask(golden, expected);
                byte[] decoded = CocoRle.Decode(CocoRle.Parse(mask.GetProperty("counts").GetString()!), golden.Height, golden.Width);
                Assert.Equal(placed.Select(v => (byte)(v >= 128 ? 1 : 0)), decoded);
            }
        }

        Assert.Contains(golden.Objects, o => o.HasMask);
    }

    [Fact]
    public void Without_a_decoder_a_line_has_the_boxes_and_no_mask()
    {
        AnswerCase golden = SegmentationGolden.AnswerCases.First(c => c.Objects.Any(o => o.HasMask));

        using var line = JsonDocument.Parse(BatchCommand.Line(Answer(golden), TestModels.LoadTrained(), new MaskSource(vaePath: null)));

        var objects = line.RootElement.GetProperty("objects").EnumerateArray().ToList();
        Assert.Equal(golden.Objects.Count, objects.Count);
        Assert.All(objects, o => Assert.False(o.TryGetProperty("mask", out _)));
    }

    [Fact]
    public void A_bad_decoder_file_fails_in_one_line_before_the_model_loads()
    {
        string vae = Path.Combine(_folder, "vae-oid.npz");
        File.WriteAllText(vae, "not a zip");
        var files = TestModels.ConvertedTrained();
        string output = Path.Combine(_folder, "out.jsonl");
        string picture = TrainedEval.Image("shapes_00").Path;

        var batch = CliProcess.Run("paligemma", "batch", "--model", files.TextModelPath, "--mmproj", files.MmprojPath, picture, "--prompt", "segment circle", "--vae", vae, "--output", output);

        Assert.Equal(1, batch.ExitCode);
        Assert.Contains(vae, batch.SingleErrorLine(), StringComparison.Ordinal);
        Assert.DoesNotContain("loading", batch.StandardError, StringComparison.Ordinal);
    }

    private static BatchResult Answer(AnswerCase golden)
    {
        var image = new PreparedImage(224, new byte[224 * 224 * 3], golden.Width, golden.Height);
        var result = new GenerationResult(golden.Answer, [], 0, StopReason.EndOfSequence, new GenerationTimings(0, 0, 0, 0), image);
        return new BatchResult($"{golden.Key}.png", "segment object", result, null);
    }
}
