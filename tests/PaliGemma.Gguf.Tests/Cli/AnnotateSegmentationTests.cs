using System.Text.Json;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tests.Infrastructure;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;

namespace PaliGemma.Gguf.Tests.Cli;

/// <summary>
/// <c>paligemma annotate … --json --masks-dir</c> on the reference answers, through the real program: the RLE it
/// prints decodes to the reference box masks placed in the picture, and the PNGs hold those masks' bytes.
/// </summary>
public sealed class AnnotateSegmentationTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("paligemma-seg-cli-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Theory]
    [MemberData(nameof(SegmentationGolden.AnswerKeys), MemberType = typeof(SegmentationGolden))]
    public void JsonMasksAndPngsAreTheReferenceMasks(string key)
    {
        AnswerCase golden = SegmentationGolden.Answer(key);
        string picture = SegmentationGolden.BlankPicture(Path.Combine(_folder, "picture.png"), golden);

        string masks = Path.Combine(_folder, "masks");
        var result = CliProcess.Run("paligemma", "annotate", picture, "--text", golden.Answer, "--vae", SegmentationGolden.VaePath, "--json", "--masks-dir", masks);
        Assert.True(result.ExitCode == 0, result.StandardError);

        using var json = JsonDocument.Parse(result.StandardOutput);
        var objects = json.RootElement.GetProperty("objects").EnumerateArray().ToList();
        Assert.Equal(golden.Objects.Count, objects.Count);
        foreach (AnswerObject expected in golden.Objects)
        {
            JsonElement actual = objects[expected.Index];
            Assert.Equal(expected.HasMask, actual.TryGetProperty("mask", out JsonElement mask));
            if (!expected.HasMask)
            {
                continue;
            }

            byte[] placed = SegmentationGolden.PlacedBoxMask(golden, expected);
            Assert.Equal([golden.Height, golden.Width], mask.GetProperty("size").EnumerateArray().Select(e => e.GetInt32()));
            byte[] decoded = CocoRle.Decode(CocoRle.Parse(mask.GetProperty("counts").GetString()!), golden.Height, golden.Width);
            Assert.Equal(placed.Select(v => (byte)(v >= 128 ? 1 : 0)), decoded);
            Assert.Equal(expected.MaskPixels, actual.GetProperty("mask_pixels").GetInt32());

            string png = Directory.GetFiles(masks, $"{expected.Index:D2}-*.png").Single();
            using var written = Image.Load<L8>(png);
            var bytes = new byte[golden.Width * golden.Height];
            written.CopyPixelDataTo(bytes);
            Assert.Equal(placed, bytes);
        }

        Directory.Delete(masks, recursive: true);
    }

    [Fact]
    public void WithoutADecoderBoxesStillComeWithOneLineSayingHowToGetMasks()
    {
        AnswerCase golden = SegmentationGolden.Answer("cat-224x224");
        string picture = Path.Combine(_folder, "cat.png");
        using (var image = new Image<Rgb24>(golden.Width, golden.Height))
        {
            image.SaveAsPng(picture);
        }

        var environment = new Dictionary<string, string> { ["HOME"] = _folder, ["XDG_CACHE_HOME"] = _folder, ["PALIGEMMA_VAE"] = "" };
        var result = CliProcess.Run("paligemma", environment, "annotate", picture, "--text", golden.Answer, "--json");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("https://storage.googleapis.com/big_vision/paligemma/vae-oid.npz", result.StandardError);
        Assert.Single(result.StandardError.Trim().Split('\n'));
        using var json = JsonDocument.Parse(result.StandardOutput);
        var found = json.RootElement.GetProperty("objects")[0];
        Assert.Equal([28, 56, 196, 168], found.GetProperty("box").EnumerateArray().Select(e => e.GetInt32()));
        Assert.False(found.TryGetProperty("mask", out _));
    }
}
