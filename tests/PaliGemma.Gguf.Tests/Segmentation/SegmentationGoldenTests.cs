using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tasks;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Segmentation;

/// <summary>
/// The segmentation reference set, case by case, through the code the CLI uses: the mask decoder, the 8-bit
/// conversion, the box placement (Pillow bicubic) and the answer parser. Tolerances are the reference's README's.
/// </summary>
public sealed class SegmentationGoldenTests(ITestOutputHelper output)
{
    private static readonly Lazy<MaskDecoder> Decoder = new(() => MaskDecoder.Load(SegmentationGolden.VaePath));

    public static TheoryData<string> DecodeKeys() => new(SegmentationGolden.DecodeCases.Select(c => c.Key));

    public static TheoryData<string> AnswerKeys() => new(SegmentationGolden.AnswerCases.Select(c => c.Key));

    [Theory]
    [MemberData(nameof(DecodeKeys))]
    public void Mask64MatchesTheReference(string key)
    {
        DecodeCase golden = SegmentationGolden.Decode(key);
        float[] expected = SegmentationGolden.Float32($"decode/{key}/mask64");
        float[] actual = Decoder.Value.Decode(golden.Codes);

        Assert.Equal(expected.Length, actual.Length);
        double worst = expected.Zip(actual, (e, a) => Math.Abs((double)e - a)).Max();
        output.WriteLine($"{key}: max |mask64 - reference| = {worst:G3} (tolerance {SegmentationGolden.Mask64Tolerance})");
        Assert.True(worst <= SegmentationGolden.Mask64Tolerance, $"{key}: max |diff| {worst} > {SegmentationGolden.Mask64Tolerance}");
        Assert.Equal(golden.PositivePixels, actual.Count(v => v > 0));
    }

    [Theory]
    [MemberData(nameof(DecodeKeys))]
    public void EightBitFromTheReferenceMaskIsExact(string key)
    {
        byte[] actual = ObjectMask.ToEightBit(SegmentationGolden.Float32($"decode/{key}/mask64"));
        byte[] expected = SegmentationGolden.UInt8($"decode/{key}/mask64_u8");

        Assert.Equal(expected, actual);
        Assert.Equal(SegmentationGolden.Decode(key).EightBitObjectPixels, actual.Count(v => v >= ObjectMask.ObjectThreshold));
    }

    [Theory]
    [MemberData(nameof(DecodeKeys))]
    public void EightBitFromOurDecoderDiffersOnlyAtBorderlinePixels(string key)
    {
        DecodeCase golden = SegmentationGolden.Decode(key);
        float[] reference = SegmentationGolden.Float32($"decode/{key}/mask64");
        byte[] expected = SegmentationGolden.UInt8($"decode/{key}/mask64_u8");
        byte[] actual = ObjectMask.ToEightBit(Decoder.Value.Decode(golden.Codes));

        bool[] borderline = reference.Select(m => IsBorderline(m, SegmentationGolden.BorderlineDistance)).ToArray();
        Assert.Equal(golden.BorderlinePixels, borderline.Count(b => b));
        int differing = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (actual[i] != expected[i])
            {
                differing++;
                Assert.True(borderline[i] && Math.Abs(actual[i] - expected[i]) == 1, $"{key}: pixel {i} is {actual[i]}, reference {expected[i]}, not a borderline pixel");
            }
        }

        output.WriteLine($"{key}: {differing} of {golden.BorderlinePixels} borderline pixels differ by one; every other pixel equal");
    }

    [Theory]
    [MemberData(nameof(AnswerKeys))]
    public void AnswerParsesToTheReferenceObjects(string key)
    {
        AnswerCase golden = SegmentationGolden.Answer(key);
        DetectionResult parsed = DetectionParser.ParseWithLeftovers(golden.Answer, golden.Width, golden.Height);

        Assert.Equal(golden.Objects.Count, parsed.Objects.Count);
        foreach (AnswerObject expected in golden.Objects)
        {
            DetectedObject actual = parsed.Objects[expected.Index];
            string where = $"{key} object {expected.Index}";
            Assert.True(expected.Label == actual.Label, $"{where}: label '{actual.Label}', expected '{expected.Label}'");
            Assert.True(expected.Box.SequenceEqual(new[] { actual.Box.X1, actual.Box.Y1, actual.Box.X2, actual.Box.Y2 }), $"{where}: box {actual.Box}");
            Assert.Equal(expected.Bins, actual.Bins);
            Assert.Equal(expected.Codes, actual.SegmentCodes);
            Assert.Equal(expected.Valid, actual.IsValid);
            Assert.Equal(expected.HasMask, actual is { IsValid: true, SegmentCodes: not null });
        }

        Assert.Equal(golden.Leftovers, parsed.Leftovers);
    }

    [Theory]
    [MemberData(nameof(AnswerKeys))]
    public void BoxMaskFromTheReferenceEightBitIsExact(string key)
    {
        AnswerCase golden = SegmentationGolden.Answer(key);
        foreach (AnswerObject expected in golden.Objects.Where(o => o.HasMask))
        {
            byte[] mask8 = SegmentationGolden.UInt8($"decode/{expected.DecodeKey}/mask64_u8");
            int width = expected.Box[2] - expected.Box[0];
            int height = expected.Box[3] - expected.Box[1];
            byte[] actual = PillowBicubic.ResizeGrey(mask8, MaskDecoder.MaskSize, MaskDecoder.MaskSize, width, height);

            Assert.Equal(SegmentationGolden.UInt8($"answer/{key}/{expected.Index}/box_mask_u8"), actual);
            Assert.Equal(expected.MaskPixels, actual.Count(v => v >= ObjectMask.ObjectThreshold));
            output.WriteLine($"{key} object {expected.Index} ({expected.Label}): 64x64 -> {width}x{height} equal, {expected.MaskPixels} object pixels");
        }
    }

    /// <summary>Answer text -> parser -> decoder -> 8 bits -> box: the CLI's path, against the stored box masks.</summary>
    [Theory]
    [MemberData(nameof(AnswerKeys))]
    public void AnswerToMasksMatchesTheReference(string key)
    {
        AnswerCase golden = SegmentationGolden.Answer(key);
        var parsed = DetectionParser.Parse(golden.Answer, golden.Width, golden.Height);
        var masked = Decoder.Value.AddMasks(parsed, golden.Width, golden.Height);

        foreach (AnswerObject expected in golden.Objects)
        {
            ObjectMask? mask = masked[expected.Index].Mask;
            Assert.Equal(expected.HasMask, mask is not null);
            if (mask is null)
            {
                continue;
            }

            byte[] reference = SegmentationGolden.UInt8($"answer/{key}/{expected.Index}/box_mask_u8");
            byte[] ours8 = ObjectMask.ToEightBit(Decoder.Value.Decode(expected.Codes!));
            bool sameEightBit = ours8.SequenceEqual(SegmentationGolden.UInt8($"decode/{expected.DecodeKey}/mask64_u8"));
            int differing = reference.Zip(mask.BoxMask, (r, a) => r != a ? 1 : 0).Sum();
            output.WriteLine($"{key} object {expected.Index}: {differing} box pixels differ; mask_pixels {mask.PixelCount} (reference {expected.MaskPixels})");

            // The reference allows a difference only where our 8-bit mask differs at a borderline pixel.
            Assert.True(sameEightBit ? differing == 0 : true, $"{key} object {expected.Index}: {differing} box pixels differ");
            if (sameEightBit)
            {
                Assert.Equal(expected.MaskPixels, mask.PixelCount);
            }
        }
    }

    /// <summary>The README's rule: v = 0.5 m + 0.5 within the distance of a step k / 255.</summary>
    private static bool IsBorderline(float mask, double distance)
    {
        double v = 0.5 * mask + 0.5;
        return Math.Floor(255 * Math.Clamp(v - distance, 0, 1)) != Math.Floor(255 * Math.Clamp(v + distance, 0, 1));
    }
}
