namespace PaliGemma.Gguf.Segmentation;

/// <summary>
/// COCO's run-length encoding of binary masks, byte for byte as pycocotools (maskApi.c) writes and reads it, so
/// that COCO tools, FiftyOne and Detectron read our masks: the mask is read column by column (Fortran order),
/// counts alternate runs of 0 and 1 starting with 0, and the compressed string stores each count (from the fourth
/// on, minus the count two before it) in 5-bit groups, low first, as characters 48 + group, with 0x20 set on all
/// but the last group and the sign carried by bit 0x10 of the last.
/// </summary>
public static class CocoRle
{
    /// <summary>pycocotools' rleEncode for one mask given row-major (height rows of width values, non-zero = object).</summary>
    public static uint[] RunLengths(ReadOnlySpan<byte> rowMajor, int height, int width)
    {
        if (rowMajor.Length != (long)height * width)
        {
            throw new ArgumentException($"Expected {height} x {width} values, got {rowMajor.Length}.", nameof(rowMajor));
        }

        var runs = new List<uint>();
        bool previous = false;
        uint count = 0;
        for (int x = 0; x < width; x++)
        {
            for (int y = 0; y < height; y++)
            {
                bool value = rowMajor[y * width + x] != 0;
                if (value != previous)
                {
                    runs.Add(count);
                    count = 0;
                    previous = value;
                }

                count++;
            }
        }

        runs.Add(count);
        return [.. runs];
    }

    /// <summary>pycocotools' rleToString.</summary>
    public static string ToString(IReadOnlyList<uint> counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        var text = new System.Text.StringBuilder(counts.Count * 2);
        for (int i = 0; i < counts.Count; i++)
        {
            long x = counts[i];
            // pycocotools takes the difference from the fourth count on (i > 2), not from the third.
            if (i > 2)
            {
                x -= counts[i - 2];
            }

            bool more = true;
            while (more)
            {
                int c = (int)(x & 0x1f);
                x >>= 5;
                more = (c & 0x10) != 0 ? x != -1 : x != 0;
                if (more)
                {
                    c |= 0x20;
                }

                text.Append((char)(c + 48));
            }
        }

        return text.ToString();
    }

    /// <summary>pycocotools' rleFrString: the counts of a compressed string. Throws <see cref="FormatException"/> on characters it never writes.</summary>
    public static uint[] Parse(string counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        var result = new List<uint>();
        int p = 0;
        while (p < counts.Length)
        {
            long x = 0;
            int k = 0;
            bool more = true;
            while (more)
            {
                if (p >= counts.Length)
                {
                    throw new FormatException("The RLE string ends inside a count.");
                }

                int c = counts[p] - 48;
                if (c is < 0 or > 0x3f || k > 6)
                {
                    throw new FormatException($"Not a COCO RLE string (character {p}).");
                }

                x |= (long)(c & 0x1f) << (5 * k);
                more = (c & 0x20) != 0;
                p++;
                k++;
                if (!more && (c & 0x10) != 0)
                {
                    x |= -1L << (5 * k);
                }
            }

            if (result.Count > 2)
            {
                x += result[^2];
            }

            result.Add((uint)x);
        }

        return [.. result];
    }

    /// <summary>The row-major 0/1 mask the counts describe (pycocotools' rleDecode).</summary>
    public static byte[] Decode(IReadOnlyList<uint> counts, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(counts);
        var mask = new byte[checked(height * width)];
        long position = 0;
        byte value = 0;
        foreach (uint run in counts)
        {
            if (position + run > mask.Length)
            {
                throw new FormatException($"The runs cover more than {height} x {width} pixels.");
            }

            for (long j = position; j < position + run; j++)
            {
                long column = j / height;
                long row = j % height;
                mask[row * width + column] = value;
            }

            position += run;
            value ^= 1;
        }

        if (position != mask.Length)
        {
            throw new FormatException($"The runs cover {position} of {height} x {width} pixels.");
        }

        return mask;
    }
}
