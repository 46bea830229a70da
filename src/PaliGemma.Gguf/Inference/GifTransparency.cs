namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Pillow opens a GIF as a palette image and convert("RGB") looks every index up in the palette, the transparent
/// one included. A copy of the file with the first frame's transparency flag cleared makes a decoder do the same.
/// </summary>
internal static class GifTransparency
{
    private const byte ExtensionIntroducer = 0x21;
    private const byte GraphicControlLabel = 0xF9;

    /// <summary>The GIF from the stream's position to its end, with the transparency flag of the first frame's graphic control extension cleared.</summary>
    public static byte[] WithoutFirstFrameTransparency(Stream stream)
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        byte[] gif = copy.ToArray();

        // Header (6) and logical screen descriptor (7), then the global colour table if the flags say there is one.
        int at = 13;
        if (gif.Length < at)
        {
            return gif;
        }

        byte screenFlags = gif[10];
        if ((screenFlags & 0x80) != 0)
        {
            at += 3 << ((screenFlags & 7) + 1);
        }

        while (at + 1 < gif.Length && gif[at] == ExtensionIntroducer)
        {
            byte label = gif[at + 1];
            at += 2;
            // A graphic control extension is one 4-byte sub-block: flags, delay (2), transparent index.
            if (label == GraphicControlLabel && at + 1 < gif.Length && gif[at] >= 1)
            {
                gif[at + 1] &= 0xFE;
            }

            // Sub-blocks up to the zero-length terminator.
            while (at < gif.Length && gif[at] != 0)
            {
                at += gif[at] + 1;
            }

            at++;
        }

        // The loop stops at the first image descriptor (or anything else): extensions after it belong to later frames.
        return gif;
    }
}
