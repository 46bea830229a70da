using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tasks;
using Xunit;

namespace PaliGemma.Gguf.Tests.Segmentation;

/// <summary>
/// COCO compressed RLE as pycocotools writes it. The strings are worked out by hand from maskApi.c's rleToString
/// (explained per case); the rest are round trips through our own decoder of the same format.
/// </summary>
public sealed class CocoRleTests
{
    [Fact]
    public void ColumnMajorCountsStartWithZeros()
    {
        // [[0, 1], [1, 1]] read column by column is 0 1 1 1: one 0, three 1s.
        Assert.Equal([1u, 3u], CocoRle.RunLengths([0, 1, 1, 1], 2, 2));
        // A mask starting with an object pixel starts with an empty run of 0s: [1, 1, 0] -> 0, 2, 1.
        Assert.Equal([0u, 2u, 1u], CocoRle.RunLengths([1, 1, 0], 1, 3));
        Assert.Equal([12u], CocoRle.RunLengths(new byte[12], 3, 4));
    }

    [Fact]
    public void StringsMatchHandWorkedPycocotoolsOutput()
    {
        // One 5-bit group each: 48 + 1 = '1', 48 + 3 = '3'.
        Assert.Equal("13", CocoRle.ToString([1u, 3u]));
        // 12 = 0b01100 fits one group without the sign bit: 48 + 12 = '<'.
        Assert.Equal("<", CocoRle.ToString([12u]));
        // 5 -> '5'. 40 = 0b1_01000: low group 8 with the continuation bit (8 | 32 = 40, '0' + 40 = 'X'), then 1 -> '1'.
        // 3 is the third count (i = 2), written as is -> '3' (pycocotools subtracts only from i > 2).
        // 10 - 40 = -30: low group -30 & 31 = 2, x = -30 >> 5 = -1, bit 0x10 clear so more: 2 | 32 = 34 -> 'R';
        // then -1 & 31 = 31 with 0x10 set and x = -1: last group, 48 + 31 = 'O'.
        Assert.Equal("5X13RO", CocoRle.ToString([5u, 40u, 3u, 10u]));
        Assert.Equal([5u, 40u, 3u, 10u], CocoRle.Parse("5X13RO"));
    }

    [Fact]
    public void RandomMasksRoundTrip()
    {
        var random = new Random(14);
        for (int trial = 0; trial < 200; trial++)
        {
            int height = random.Next(1, 40);
            int width = random.Next(1, 40);
            var mask = new byte[height * width];
            // Blobs of runs rather than noise, so counts reach the multi-group and negative-delta encodings.
            double density = random.NextDouble();
            for (int i = 0; i < mask.Length; i++)
            {
                mask[i] = (byte)(random.NextDouble() < density ? 1 : 0);
            }

            uint[] counts = CocoRle.RunLengths(mask, height, width);
            Assert.Equal(height * width, counts.Sum(c => (long)c));
            string text = CocoRle.ToString(counts);
            Assert.Equal(counts, CocoRle.Parse(text));
            Assert.Equal(mask, CocoRle.Decode(counts, height, width));
        }
    }

    /// <summary>ObjectMask encodes from its box alone; it must equal encoding the whole picture's binary mask.</summary>
    [Fact]
    public void BoxEncodingEqualsWholePictureEncoding()
    {
        var random = new Random(64);
        for (int trial = 0; trial < 100; trial++)
        {
            int width = random.Next(1, 120);
            int height = random.Next(1, 120);
            int x1 = random.Next(0, width);
            int y1 = random.Next(0, height);
            var box = new PixelBox(x1, y1, random.Next(x1 + 1, width + 1), random.Next(y1 + 1, height + 1));
            float[] mask64 = Enumerable.Range(0, 64 * 64).Select(i => (float)Math.Sin((i % 64 * 0.2) + (i / 64 * 0.15) + trial)).ToArray();
            ObjectMask mask = ObjectMask.Place(mask64, box, width, height);

            byte[] binary = mask.ToPictureMask().Select(v => (byte)(v >= ObjectMask.ObjectThreshold ? 1 : 0)).ToArray();
            Assert.Equal(CocoRle.RunLengths(binary, height, width), mask.RunLengths());
            Assert.Equal(binary, CocoRle.Decode(CocoRle.Parse(mask.ToCocoRle()), height, width));
            Assert.Equal(binary.Count(b => b == 1), mask.PixelCount);
        }
    }

    [Fact]
    public void MalformedStringsAreRejected()
    {
        Assert.Throws<FormatException>(() => CocoRle.Parse("X"));
        Assert.Throws<FormatException>(() => CocoRle.Parse("1 3"));
        Assert.Throws<FormatException>(() => CocoRle.Decode([5u], 2, 2));
    }
}
