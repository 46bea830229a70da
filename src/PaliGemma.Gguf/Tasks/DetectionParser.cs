namespace PaliGemma.Gguf.Tasks;

/// <summary>
/// Reads PaliGemma's answers to "detect ..." and "segment ..." prompts:
/// <c>&lt;locY1&gt;&lt;locX1&gt;&lt;locY2&gt;&lt;locX2&gt; label</c> groups separated by " ; ", where a segmentation
/// group has sixteen <c>&lt;segNNN&gt;</c> tokens between the locations and the label.
/// </summary>
/// <remarks>
/// The grammar is that of the regular expression in big_vision's PaliGemma demo
/// (huggingface.co/spaces/big-vision/paligemma-hf, app.py, <c>_SEGMENT_DETECT_RE</c> and <c>extract_objs</c>):
/// four location tokens with nothing between them, optional whitespace, optionally exactly sixteen segment
/// tokens, optional whitespace, then a label that runs up to the next ';', '&lt;' or '&gt;'. It is matched by
/// hand rather than with that regex: model output is untrusted and may be long, and a scanner that looks at
/// each "&lt;loc" once is linear however the text is built. Two choices differ from the demo: labels are trimmed
/// (the demo keeps the space before " ; "), and a segment code above 127 does not count as one, because the
/// mask decoder's codebook has 128 entries; such a run is left as text, as a run of fewer than sixteen is.
/// </remarks>
public static class DetectionParser
{
    /// <summary>Location tokens divide each side of the model's square input into this many bins.</summary>
    internal const int LocationBins = 1024;

    internal const int SegmentTokenCount = 16;

    /// <summary>The segmentation VQ-VAE's codebook size: valid codes are 0..127.</summary>
    internal const int SegmentCodebookSize = 128;

    private const string LocationPrefix = "<loc";
    private const int LocationDigits = 4;
    private const string SegmentPrefix = "<seg";
    private const int SegmentDigits = 3;
    private const int CoordinatesPerBox = 4;

    /// <summary>
    /// The objects in <paramref name="text"/>, with boxes in the pixels of the original
    /// <paramref name="imageWidth"/> x <paramref name="imageHeight"/> picture. Never throws on any text:
    /// what is not a complete group is skipped (see <see cref="ParseWithLeftovers"/> to get it back).
    /// </summary>
    public static IReadOnlyList<DetectedObject> Parse(string text, int imageWidth, int imageHeight) =>
        ParseWithLeftovers(text, imageWidth, imageHeight).Objects;

    /// <summary>As <see cref="Parse"/>, and also the text that is not part of any group.</summary>
    public static DetectionResult ParseWithLeftovers(string text, int imageWidth, int imageHeight)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageHeight);

        var objects = new List<DetectedObject>();
        var leftovers = new List<string>();
        int consumed = 0;
        int groupStart;
        while ((groupStart = FindGroup(text, consumed)) >= 0)
        {
            AddLeftover(leftovers, text, consumed, groupStart);
            objects.Add(ReadGroup(text, groupStart, imageWidth, imageHeight, out consumed));
        }

        AddLeftover(leftovers, text, consumed, text.Length);
        return new DetectionResult(objects, leftovers);
    }

    /// <summary>
    /// big_vision's mapping, <c>round(int(bin) / 1024 * size)</c>, then clamped to [0, size] for bins the model
    /// cannot emit (the token text allows 1024..9999). bin / 1024 * size is exact in a double, and Python's
    /// round() goes to even on a tie, so this gives the demo's pixel, ties included.
    /// </summary>
    internal static int BinToPixel(int bin, int size)
    {
        double pixel = Math.Round(bin / (double)LocationBins * size, MidpointRounding.ToEven);
        return (int)Math.Clamp(pixel, 0, size);
    }

    /// <summary>The index of the next four adjacent location tokens at or after <paramref name="from"/>, or -1.</summary>
    private static int FindGroup(string text, int from)
    {
        while (from < text.Length)
        {
            int candidate = text.IndexOf(LocationPrefix, from, StringComparison.Ordinal);
            if (candidate < 0)
            {
                return -1;
            }

            int cursor = candidate;
            int found = 0;
            while (found < CoordinatesPerBox && TryReadToken(text, ref cursor, LocationPrefix, LocationDigits, out _))
            {
                found++;
            }

            if (found == CoordinatesPerBox)
            {
                return candidate;
            }

            from = candidate + 1;
        }

        return -1;
    }

    private static DetectedObject ReadGroup(string text, int start, int width, int height, out int end)
    {
        int cursor = start;
        var bins = new int[CoordinatesPerBox];
        for (int i = 0; i < CoordinatesPerBox; i++)
        {
            // FindGroup has seen all four.
            TryReadToken(text, ref cursor, LocationPrefix, LocationDigits, out bins[i]);
        }

        cursor = SkipWhitespace(text, cursor);
        int[]? codes = TryReadSegmentCodes(text, ref cursor);
        cursor = SkipWhitespace(text, cursor);

        int labelStart = cursor;
        while (cursor < text.Length && text[cursor] is not (';' or '<' or '>'))
        {
            cursor++;
        }

        string label = text[labelStart..cursor].Trim();
        if (cursor < text.Length && text[cursor] == ';')
        {
            cursor = SkipWhitespace(text, cursor + 1);
        }

        end = cursor;
        var box = new PixelBox(
            X1: BinToPixel(bins[1], width),
            Y1: BinToPixel(bins[0], height),
            X2: BinToPixel(bins[3], width),
            Y2: BinToPixel(bins[2], height));
        bool isValid = box.X2 > box.X1 && box.Y2 > box.Y1;
        return new DetectedObject(label, box, bins, codes, isValid);
    }

    /// <summary>All sixteen codes, advancing <paramref name="cursor"/> past them; or null, leaving it where it was.</summary>
    private static int[]? TryReadSegmentCodes(string text, ref int cursor)
    {
        int probe = cursor;
        var codes = new int[SegmentTokenCount];
        for (int i = 0; i < SegmentTokenCount; i++)
        {
            if (!TryReadToken(text, ref probe, SegmentPrefix, SegmentDigits, out codes[i]) || codes[i] >= SegmentCodebookSize)
            {
                return null;
            }
        }

        cursor = probe;
        return codes;
    }

    /// <summary>Reads "&lt;prefix" + exactly <paramref name="digits"/> ASCII digits + "&gt;" at <paramref name="cursor"/>.</summary>
    private static bool TryReadToken(string text, ref int cursor, string prefix, int digits, out int value)
    {
        value = 0;
        int length = prefix.Length + digits + 1;
        if (cursor > text.Length - length || string.CompareOrdinal(text, cursor, prefix, 0, prefix.Length) != 0)
        {
            return false;
        }

        int position = cursor + prefix.Length;
        for (int i = 0; i < digits; i++, position++)
        {
            char c = text[position];
            if (!char.IsAsciiDigit(c))
            {
                value = 0;
                return false;
            }

            value = value * 10 + (c - '0');
        }

        if (text[position] != '>')
        {
            value = 0;
            return false;
        }

        cursor = position + 1;
        return true;
    }

    private static int SkipWhitespace(string text, int cursor)
    {
        while (cursor < text.Length && char.IsWhiteSpace(text[cursor]))
        {
            cursor++;
        }

        return cursor;
    }

    private static void AddLeftover(List<string> leftovers, string text, int start, int end)
    {
        // Whitespace and ';' at the ends are the separators between groups, not content.
        while (start < end && IsSeparator(text[start]))
        {
            start++;
        }

        while (end > start && IsSeparator(text[end - 1]))
        {
            end--;
        }

        if (end > start)
        {
            leftovers.Add(text[start..end]);
        }
    }

    private static bool IsSeparator(char c) => c == ';' || char.IsWhiteSpace(c);
}
