using System.Security.Cryptography;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// Every picture of the decoding reference set decodes to exactly the bytes Pillow gives for
/// <c>Image.open</c> → <c>ImageOps.exif_transpose</c> → <c>convert("RGB")</c>, through the decoder
/// <c>paligemma run</c> uses. No tolerance: one level off in one value fails the case.
/// </summary>
public sealed class DecodeGoldenTests(ITestOutputHelper output)
{
    public static TheoryData<string> CaseNames() => new(DecodeGolden.Cases.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Decodes_exactly_as_Pillow(string name)
    {
        var c = DecodeGolden.Case(name);
        Assert.Equal(c.FileSha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(c.Path))));
        byte[] expected = DecodeGolden.ExpectedRgb(c);
        Assert.Equal(c.ExpectedSha256, Convert.ToHexStringLower(SHA256.HashData(expected)));

        var picture = ImagePreprocessor.DecodePicture(c.Path);

        Assert.Equal((c.ExpectedWidth, c.ExpectedHeight), (picture.Width, picture.Height));
        int differing = 0;
        int maxDiff = 0;
        int first = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            int diff = Math.Abs(expected[i] - picture.Rgb[i]);
            if (diff != 0)
            {
                differing++;
                maxDiff = Math.Max(maxDiff, diff);
                first = first < 0 ? i : first;
            }
        }

        output.WriteLine($"{name} ({c.Format} {c.Mode}, {c.ExpectedWidth} x {c.ExpectedHeight}): {differing} of {expected.Length} values differ, max |Δ| = {maxDiff}");
        Assert.True(
            expected.AsSpan().SequenceEqual(picture.Rgb),
            $"{name}: {differing} of {expected.Length} values differ from Pillow's, up to {maxDiff} levels; the first at pixel ({first / 3 % c.ExpectedWidth}, {first / 3 / c.ExpectedWidth}) channel {first % 3}");
    }

    public static TheoryData<string> OrientedCaseNames() => new(DecodeGolden.Cases.Where(c => c.ExifOrientation is >= 2 and <= 8).Select(c => c.Name));

    /// <summary>
    /// With the orientation turned off the stored pixels come through: the picture has the file's own size, differs
    /// from the oriented one, and turned by its tag becomes Pillow's picture again.
    /// </summary>
    [Theory]
    [MemberData(nameof(OrientedCaseNames))]
    public void Orientation_can_be_turned_off(string name)
    {
        var c = DecodeGolden.Case(name);
        byte[] expected = DecodeGolden.ExpectedRgb(c);

        var stored = ImagePreprocessor.DecodePicture(c.Path, applyExifOrientation: false);

        bool quarterTurn = c.ExifOrientation >= 5;
        Assert.Equal(quarterTurn ? (c.ExpectedHeight, c.ExpectedWidth) : (c.ExpectedWidth, c.ExpectedHeight), (stored.Width, stored.Height));
        Assert.False(expected.AsSpan().SequenceEqual(stored.Rgb), $"{name}: the stored pixels equal the oriented ones, so the case cannot tell");
        var turned = ExifOrientation.Apply(stored, c.ExifOrientation!.Value);
        Assert.True(expected.AsSpan().SequenceEqual(turned.Rgb), $"{name}: the stored pixels turned by orientation {c.ExifOrientation} are not Pillow's");
        Assert.Equal((c.ExpectedWidth, c.ExpectedHeight), ImagePreprocessor.DecodedSize(c.Path));
        Assert.Equal((stored.Width, stored.Height), ImagePreprocessor.DecodedSize(c.Path, applyExifOrientation: false));
    }
}
