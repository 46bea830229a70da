using PaliGemma.Gguf.Tasks;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;

namespace PaliGemma.Gguf.Tests.Tasks;

public sealed class BitmapFontTests
{
    [Fact]
    public void Every_printable_ascii_character_has_its_own_glyph()
    {
        const int Count = '~' - ' ' + 1;
        Assert.Equal(Count * BitmapFont.GlyphHeight, BitmapFont.Glyphs.Length);

        var glyphs = Enumerable.Range(0, Count)
            .Select(i => System.Convert.ToHexString(BitmapFont.Glyphs.Slice(i * BitmapFont.GlyphHeight, BitmapFont.GlyphHeight)))
            .ToList();
        // A row typed twice or a glyph pasted into the wrong slot shows up as a duplicate.
        Assert.Equal(Count, glyphs.Distinct().Count());
        Assert.All(BitmapFont.Glyphs.ToArray(), row => Assert.InRange(row, 0, (1 << BitmapFont.GlyphWidth) - 1));
        Assert.Equal("00000000000000", glyphs[0]);
    }

    [Fact]
    public void Characters_the_font_lacks_become_one_question_mark_each()
    {
        Assert.Equal("caf? ? ok", BitmapFont.ToDrawable("café 😀 ok"));
        Assert.Equal("a?b?c", BitmapFont.ToDrawable("a\nb\uD800c"));
    }

    [Fact]
    public void Glyphs_are_drawn_scaled_at_the_given_corner()
    {
        using var image = new Image<Rgba32>(20, 20, new Rgba32(0, 0, 0));
        var ink = new Rgba32(255, 255, 255);

        // 'T' at scale 2 from (3, 4): a 10-pixel bar on rows 4..5, then a 2-pixel stem on columns 7..8 down to row 17.
        BitmapFont.Draw(image, "T", 3, 4, 2, ink);

        var lit = new HashSet<(int, int)>();
        for (int y = 0; y < 20; y++)
        {
            for (int x = 0; x < 20; x++)
            {
                if (image[x, y] == ink)
                {
                    lit.Add((x, y));
                }
            }
        }

        var expected = new HashSet<(int, int)>();
        for (int x = 3; x < 13; x++)
        {
            expected.Add((x, 4));
            expected.Add((x, 5));
        }

        for (int y = 6; y < 18; y++)
        {
            expected.Add((7, y));
            expected.Add((8, y));
        }

        Assert.Equal(expected.Order(), lit.Order());
    }

    [Fact]
    public void Text_past_the_edges_is_clipped()
    {
        var ink = new Rgba32(255, 255, 255);
        using var image = new Image<Rgba32>(4, 4, new Rgba32(0, 0, 0));

        // 'T' two pixels left of the picture and taller than it: the bar's last three pixels and the stem's top three remain.
        BitmapFont.Draw(image, "T", -2, 0, 1, ink);

        var lit = new List<(int, int)>();
        for (int y = 0; y < 4; y++)
        {
            for (int x = 0; x < 4; x++)
            {
                if (image[x, y] == ink)
                {
                    lit.Add((x, y));
                }
            }
        }

        Assert.Equal([(0, 0), (1, 0), (2, 0), (0, 1), (0, 2), (0, 3)], lit);
    }
}
