using System.Diagnostics;
using System.Text;
using CsCheck;
using PaliGemma.Gguf.Tasks;
using Xunit;

namespace PaliGemma.Gguf.Tests.Tasks;

/// <summary>
/// Hand-written model answers. Expected pixels are worked out by hand from big_vision's
/// <c>round(bin / 1024 * size)</c> with Python's round-half-to-even (checked with python3).
/// </summary>
public sealed class DetectionParserTests
{
    [Fact]
    public void Several_objects_map_onto_a_640_by_480_picture()
    {
        var result = DetectionParser.ParseWithLeftovers(
            "<loc0100><loc0200><loc0500><loc0900> cat ; <loc0010><loc0020><loc0300><loc0400> big dog", 640, 480);

        Assert.Empty(result.Leftovers);
        Assert.Collection(
            result.Objects,
            cat =>
            {
                Assert.Equal("cat", cat.Label);
                Assert.Equal([100, 200, 500, 900], cat.Bins);
                // y1 100/1024*480 = 46.875 -> 47; x1 200/1024*640 = 125; y2 234.375 -> 234; x2 562.5 -> 562 (tie to even).
                Assert.Equal(new PixelBox(X1: 125, Y1: 47, X2: 562, Y2: 234), cat.Box);
                Assert.Null(cat.SegmentCodes);
                Assert.True(cat.IsValid);
            },
            dog =>
            {
                Assert.Equal("big dog", dog.Label);
                Assert.Equal([10, 20, 300, 400], dog.Bins);
                // y1 4.6875 -> 5; x1 12.5 -> 12 (tie to even); y2 140.625 -> 141; x2 250.
                Assert.Equal(new PixelBox(X1: 12, Y1: 5, X2: 250, Y2: 141), dog.Box);
                Assert.True(dog.IsValid);
            });
    }

    [Fact]
    public void The_first_location_is_y_and_the_second_x()
    {
        // A wide picture, so y and x scale differently: a swap would show in every coordinate.
        var detected = Assert.Single(DetectionParser.Parse("<loc0000><loc0512><loc1023><loc1023> kite", 1000, 200));

        Assert.Equal(new PixelBox(X1: 500, Y1: 0, X2: 999, Y2: 200), detected.Box);
        Assert.Equal(499, detected.Box.Width);
        Assert.Equal(200, detected.Box.Height);
    }

    [Theory]
    [InlineData(0, 640, 0)]
    [InlineData(1023, 640, 639)]   // 639.375
    [InlineData(1023, 480, 480)]   // 479.53: the far edge, exclusive
    [InlineData(1023, 451, 451)]   // 450.56
    [InlineData(1023, 1024, 1023)]
    [InlineData(4, 640, 2)]        // 2.5, tie to even
    [InlineData(12, 640, 8)]       // 7.5, tie to even
    [InlineData(16, 480, 8)]       // 7.5
    [InlineData(48, 480, 22)]      // 22.5
    [InlineData(512, 451, 226)]    // 225.5
    [InlineData(512, 1, 0)]        // 0.5
    [InlineData(600, 1, 1)]        // 0.59
    [InlineData(2048, 480, 480)]   // 960, clamped
    [InlineData(9999, 640, 640)]   // 6249, clamped
    public void Bins_map_like_the_reference_demo(int bin, int size, int expected)
    {
        Assert.Equal(expected, DetectionParser.BinToPixel(bin, size));
    }

    [Fact]
    public void Bins_0_and_1023_cover_the_whole_picture()
    {
        var detected = Assert.Single(DetectionParser.Parse("<loc0000><loc0000><loc1023><loc1023> everything", 451, 300));

        Assert.Equal(new PixelBox(0, 0, 451, 300), detected.Box);
        Assert.True(detected.IsValid);
    }

    [Fact]
    public void Bins_past_1023_are_kept_raw_and_their_pixels_clamped_to_the_picture()
    {
        var detected = Assert.Single(DetectionParser.Parse("<loc0000><loc0000><loc2048><loc4096> huge", 640, 480));

        Assert.Equal([0, 0, 2048, 4096], detected.Bins);
        Assert.Equal(new PixelBox(0, 0, 640, 480), detected.Box);
    }

    [Fact]
    public void A_label_with_spaces_is_kept_whole_and_trimmed()
    {
        var detected = Assert.Single(DetectionParser.Parse("<loc0100><loc0100><loc0200><loc0200>   big  brown dog \t ; ", 100, 100));

        Assert.Equal("big  brown dog", detected.Label);
    }

    [Fact]
    public void A_group_without_a_label_is_still_an_object()
    {
        var result = DetectionParser.ParseWithLeftovers(
            "<loc0100><loc0100><loc0200><loc0200> ; <loc0300><loc0300><loc0400><loc0400> dog ; <loc0500><loc0500><loc0600><loc0600>", 1024, 1024);

        Assert.Equal(["", "dog", ""], result.Objects.Select(o => o.Label));
        Assert.Equal(new PixelBox(100, 100, 200, 200), result.Objects[0].Box);
        Assert.Equal(new PixelBox(500, 500, 600, 600), result.Objects[2].Box);
        Assert.Empty(result.Leftovers);
    }

    [Fact]
    public void A_truncated_group_at_the_end_is_kept_as_text()
    {
        var result = DetectionParser.ParseWithLeftovers("<loc0100><loc0200><loc0500><loc0900> cat ; <loc0100><loc0200>", 640, 480);

        Assert.Equal("cat", Assert.Single(result.Objects).Label);
        Assert.Equal(["<loc0100><loc0200>"], result.Leftovers);
    }

    [Fact]
    public void A_group_of_three_locations_is_kept_as_text_and_the_next_group_still_parses()
    {
        var result = DetectionParser.ParseWithLeftovers(
            "<loc0001><loc0002><loc0003> dog ; <loc0100><loc0200><loc0500><loc0900> cat", 640, 480);

        var cat = Assert.Single(result.Objects);
        Assert.Equal("cat", cat.Label);
        Assert.Equal([100, 200, 500, 900], cat.Bins);
        Assert.Equal(["<loc0001><loc0002><loc0003> dog"], result.Leftovers);
    }

    [Fact]
    public void A_fifth_location_is_not_part_of_the_group_before_it()
    {
        // As the reference regex: four locations, no label (the next character is '<'), then text.
        var result = DetectionParser.ParseWithLeftovers("<loc0001><loc0002><loc0003><loc0004><loc0005> cat", 1024, 1024);

        var detected = Assert.Single(result.Objects);
        Assert.Equal([1, 2, 3, 4], detected.Bins);
        Assert.Equal("", detected.Label);
        Assert.Equal(["<loc0005> cat"], result.Leftovers);
    }

    [Theory]
    [InlineData("<loc100><loc0200><loc0500><loc0900> cat")]     // three digits
    [InlineData("<loc0100><loc0200><loc0500><loc09000> cat")]   // five digits
    [InlineData("<loc0100><loc0200> <loc0500><loc0900> cat")]   // space inside the group
    [InlineData("<loc0100><loc0200><loc0500><loc0x00> cat")]
    [InlineData("<LOC0100><LOC0200><LOC0500><LOC0900> cat")]
    [InlineData("<loc0100><loc0200><loc0500><loc0900")]
    public void Malformed_groups_are_text(string text)
    {
        var result = DetectionParser.ParseWithLeftovers(text, 640, 480);

        Assert.Empty(result.Objects);
        Assert.Equal([text], result.Leftovers);
    }

    [Fact]
    public void Prose_around_groups_is_kept_in_order()
    {
        var result = DetectionParser.ParseWithLeftovers(
            "I see <loc0100><loc0200><loc0500><loc0900> cat ; and then ; <loc0010><loc0020><loc0300><loc0400> dog > bone", 640, 480);

        Assert.Equal(["cat", "dog"], result.Objects.Select(o => o.Label));
        Assert.Equal(["I see", "and then", "> bone"], result.Leftovers);
    }

    [Fact]
    public void Empty_and_group_free_answers_give_no_objects()
    {
        Assert.Empty(DetectionParser.Parse("", 10, 10));
        var result = DetectionParser.ParseWithLeftovers("no objects here", 10, 10);
        Assert.Empty(result.Objects);
        Assert.Equal(["no objects here"], result.Leftovers);
    }

    [Fact]
    public void Corners_in_the_wrong_order_give_an_invalid_object()
    {
        var objects = DetectionParser.Parse(
            "<loc0500><loc0100><loc0400><loc0200> upside down ; <loc0100><loc0500><loc0200><loc0400> mirrored ; <loc0100><loc0100><loc0100><loc0200> flat ; <loc0100><loc0100><loc0200><loc0200> fine",
            640,
            480);

        Assert.Equal(["upside down", "mirrored", "flat", "fine"], objects.Select(o => o.Label));
        Assert.Equal([false, false, false, true], objects.Select(o => o.IsValid));
        Assert.Equal(new PixelBox(X1: 62, Y1: 234, X2: 125, Y2: 188), objects[0].Box);
    }

    [Fact]
    public void Bins_that_land_on_the_same_pixel_give_an_invalid_object()
    {
        // 1 and 3 are different bins but both round to pixel 0 of a 10-pixel side.
        var detected = Assert.Single(DetectionParser.Parse("<loc0001><loc0001><loc0003><loc0003> speck", 10, 10));

        Assert.Equal(new PixelBox(0, 0, 0, 0), detected.Box);
        Assert.False(detected.IsValid);
    }

    [Fact]
    public void Segmentation_groups_expose_the_sixteen_raw_codes()
    {
        int[] codes = [0, 1, 2, 3, 17, 42, 64, 99, 100, 101, 110, 120, 125, 126, 127, 7];
        string segs = string.Concat(codes.Select(c => $"<seg{c:D3}>"));
        var result = DetectionParser.ParseWithLeftovers(
            $"<loc0100><loc0200><loc0500><loc0900>{segs} cat ; <loc0010><loc0020><loc0300><loc0400> {segs}big dog", 640, 480);

        Assert.Empty(result.Leftovers);
        Assert.Equal(2, result.Objects.Count);
        Assert.Equal("cat", result.Objects[0].Label);
        Assert.Equal(codes, result.Objects[0].SegmentCodes);
        Assert.Equal(new PixelBox(125, 47, 562, 234), result.Objects[0].Box);
        Assert.Equal("big dog", result.Objects[1].Label);
        Assert.Equal(codes, result.Objects[1].SegmentCodes);
    }

    [Theory]
    [InlineData(15, 5)]    // one token short
    [InlineData(16, 128)]  // past the 128-entry codebook
    public void An_incomplete_or_out_of_range_segment_run_is_text(int count, int code)
    {
        string segs = string.Concat(Enumerable.Repeat("<seg005>", count - 1)) + $"<seg{code:D3}>";
        var result = DetectionParser.ParseWithLeftovers($"<loc0100><loc0200><loc0500><loc0900>{segs} cat", 640, 480);

        var detected = Assert.Single(result.Objects);
        Assert.Null(detected.SegmentCodes);
        Assert.Equal("", detected.Label);
        Assert.Equal([segs + " cat"], result.Leftovers);
    }

    [Fact]
    public void Non_positive_picture_sizes_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DetectionParser.Parse("", 0, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => DetectionParser.Parse("", 10, -1));
    }

    [Fact]
    public void Well_formed_answers_parse_back_to_the_objects_they_were_written_from()
    {
        var genLabel = Gen.Char["abcdefghijklmnopqrstuvwxyz0123456789 -'éü"].Array[0, 20].Select(chars => new string(chars).Trim());
        var genObject = Gen.Select(Gen.Int[0, 1023].Array[4], genLabel, Gen.Bool, Gen.Int[0, 127].Array[16]);
        var gen = Gen.Select(genObject.Array[0, 8], Gen.Int[1, 4000], Gen.Int[1, 4000]);

        gen.Sample((objects, width, height) =>
        {
            string text = string.Join(" ; ", objects.Select(o =>
                string.Concat(o.Item1.Select(b => $"<loc{b:D4}>"))
                + (o.Item3 ? string.Concat(o.Item4.Select(c => $"<seg{c:D3}>")) : "")
                + (o.Item2.Length > 0 ? " " + o.Item2 : "")));

            var result = DetectionParser.ParseWithLeftovers(text, width, height);

            Assert.Empty(result.Leftovers);
            Assert.Equal(objects.Length, result.Objects.Count);
            for (int i = 0; i < objects.Length; i++)
            {
                var (bins, label, segmented, codes) = objects[i];
                var parsed = result.Objects[i];
                Assert.Equal(bins, parsed.Bins);
                Assert.Equal(label, parsed.Label);
                Assert.Equal(segmented ? codes : null, parsed.SegmentCodes);
                Assert.Equal(Reference(bins[1], width), parsed.Box.X1);
                Assert.Equal(Reference(bins[0], height), parsed.Box.Y1);
                Assert.Equal(Reference(bins[3], width), parsed.Box.X2);
                Assert.Equal(Reference(bins[2], height), parsed.Box.Y2);
            }
        });
    }

    [Fact]
    public void Never_throws_and_keeps_its_invariants_on_arbitrary_text()
    {
        var piece = Gen.OneOf(
            Gen.Int[0, 9999].Select(b => $"<loc{b:D4}>"),
            Gen.Int[0, 999].Select(c => $"<seg{c:D3}>"),
            Gen.OneOfConst("<loc", "<seg", "<loc01", "<", ">", ";", " ; ", " ", "\n", "\t", "cat", "big dog", "é", "\uD800", "\0", "<loc0100", "0>"),
            Gen.String[0, 6]);
        var gen = Gen.Select(piece.Array[0, 60].Select(string.Concat), Gen.Int[1, 5000], Gen.Int[1, 5000]);

        gen.Sample(
            (text, width, height) =>
            {
                var result = DetectionParser.ParseWithLeftovers(text, width, height);
                foreach (var detected in result.Objects)
                {
                    Assert.Equal(4, detected.Bins.Length);
                    Assert.InRange(detected.Box.X1, 0, width);
                    Assert.InRange(detected.Box.X2, 0, width);
                    Assert.InRange(detected.Box.Y1, 0, height);
                    Assert.InRange(detected.Box.Y2, 0, height);
                    Assert.Equal(detected.Box.X2 > detected.Box.X1 && detected.Box.Y2 > detected.Box.Y1, detected.IsValid);
                    Assert.Equal(detected.Label.Trim(), detected.Label);
                    Assert.DoesNotContain(detected.Label, c => c is ';' or '<' or '>');
                    if (detected.SegmentCodes is { } codes)
                    {
                        Assert.Equal(16, codes.Length);
                        Assert.All(codes, c => Assert.InRange(c, 0, 127));
                    }
                }

                foreach (string leftover in result.Leftovers)
                {
                    Assert.NotEqual("", leftover);
                    Assert.Contains(leftover, text);
                }
            },
            iter: 20_000);
    }

    [Fact]
    public void Adversarial_answers_parse_in_linear_time()
    {
        // Near-groups everywhere: a backtracking matcher retries each "<loc" against the rest of the text.
        var text = new StringBuilder();
        for (int i = 0; i < 40_000; i++)
        {
            text.Append("<loc0001><loc0002><loc0003> ");
        }

        text.Append(' ', 200_000).Append("<loc0001>");
        string near = text.ToString();
        string groups = string.Concat(Enumerable.Repeat("<loc0001><loc0002><loc0003><loc0004> a b c d e f ; ", 30_000));

        var clock = Stopwatch.StartNew();
        var nearResult = DetectionParser.ParseWithLeftovers(near, 640, 480);
        var groupsResult = DetectionParser.ParseWithLeftovers(groups, 640, 480);
        clock.Stop();

        Assert.Empty(nearResult.Objects);
        Assert.Equal(30_000, groupsResult.Objects.Count);
        // About 2 MB of text; a linear scan takes milliseconds, a quadratic one hours.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
    }

    /// <summary>Python's round(bin / 1024 * size), written independently of the parser.</summary>
    private static int Reference(int bin, int size)
    {
        long twice = 2L * bin * size;
        long floor = twice / 2048;
        long remainder = twice % 2048;
        return (int)(remainder > 1024 || (remainder == 1024 && floor % 2 == 1) ? floor + 1 : floor);
    }
}
