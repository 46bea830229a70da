using System.Text.Json;
using PaliGemma.Gguf.Tests.Infrastructure;
using SixLabors.ImageSharp;
using Xunit;

namespace PaliGemma.Gguf.Tests.Cli;

/// <summary>
/// <c>--ignore-exif-orientation</c> through the real programs, on a reference JPEG whose tag asks for a quarter
/// turn (orientation 6, stored 4:3 landscape): by default the picture, its boxes and the annotated PNG are the
/// turned (portrait) picture; with the option they are the stored one.
/// </summary>
public sealed class ExifOrientationCommandTests : IDisposable
{
    private const string Answer = "<loc0100><loc0200><loc0500><loc0900> square";

    private readonly string _folder = Directory.CreateTempSubdirectory("paligemma-exif-cli-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static PictureCase QuarterTurned => DecodeGolden.Cases.First(c => c.ExifOrientation == 6 && c.Format == "JPEG");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Annotate_measures_and_draws_the_picture_the_option_names(bool ignore)
    {
        var c = QuarterTurned;
        string png = Path.Combine(_folder, "annotated.png");
        string[] flag = ignore ? ["--ignore-exif-orientation"] : [];
        var result = CliProcess.Run("paligemma", ["annotate", c.Path, "--text", Answer, "--json", "--out", png, .. flag]);
        Assert.True(result.ExitCode == 0, result.StandardError);

        // The tag turns the stored picture a quarter: the oriented size is the golden one, the stored size its swap.
        var expected = ignore ? (c.ExpectedHeight, c.ExpectedWidth) : (c.ExpectedWidth, c.ExpectedHeight);
        using var json = JsonDocument.Parse(result.StandardOutput);
        Assert.Equal(expected, (json.RootElement.GetProperty("width").GetInt32(), json.RootElement.GetProperty("height").GetInt32()));
        var box = json.RootElement.GetProperty("objects")[0].GetProperty("box").EnumerateArray().Select(v => v.GetInt32()).ToArray();
        Assert.Equal(expected.Item1 * 900 / 1024, box[2], tolerance: 1);
        var info = Image.Identify(png);
        Assert.Equal(expected, (info.Width, info.Height));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Run_annotates_the_picture_the_model_saw(bool ignore)
    {
        var c = QuarterTurned;
        var files = TestModels.ConvertedTrained();
        string png = Path.Combine(_folder, "run.png");
        string[] flag = ignore ? ["--ignore-exif-orientation"] : [];
        var result = CliProcess.Run("paligemma", ["run", "--model", files.TextModelPath, "--mmproj", files.MmprojPath, "-i", c.Path, "-p", "detect square", "-n", "8", "--json", "--annotate", png, .. flag]);
        Assert.True(result.ExitCode == 0, result.StandardError);

        var info = Image.Identify(png);
        Assert.Equal(ignore ? (c.ExpectedHeight, c.ExpectedWidth) : (c.ExpectedWidth, c.ExpectedHeight), (info.Width, info.Height));
    }
}
