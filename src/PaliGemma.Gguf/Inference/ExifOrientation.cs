namespace PaliGemma.Gguf.Inference;

/// <summary>
/// The EXIF Orientation tag applied as Pillow's <c>ImageOps.exif_transpose</c> applies it (transformers'
/// <c>load_image</c> calls it): values 2..8 flip or rotate the stored pixels so the picture stands as its
/// camera meant; 1, a missing tag or any other value leaves them as stored.
/// </summary>
internal static class ExifOrientation
{
    /// <summary>The oriented picture; the same instance when <paramref name="orientation"/> asks for nothing.</summary>
    public static RgbPicture Apply(RgbPicture picture, int orientation)
    {
        if (orientation is < 2 or > 8)
        {
            return picture;
        }

        int w = picture.Width;
        int h = picture.Height;
        // 5..8 turn the picture a quarter: width and height swap.
        bool swap = orientation >= 5;
        int outWidth = swap ? h : w;
        int outHeight = swap ? w : h;
        byte[] source = picture.Rgb;
        var result = new byte[source.Length];
        for (int y = 0; y < outHeight; y++)
        {
            for (int x = 0; x < outWidth; x++)
            {
                // Where output pixel (x, y) comes from, for Pillow's transpose method of each value.
                (int sx, int sy) = orientation switch
                {
                    2 => (w - 1 - x, y), // FLIP_LEFT_RIGHT
                    3 => (w - 1 - x, h - 1 - y), // ROTATE_180
                    4 => (x, h - 1 - y), // FLIP_TOP_BOTTOM
                    5 => (y, x), // TRANSPOSE
                    6 => (y, h - 1 - x), // ROTATE_270: a quarter turn clockwise
                    7 => (w - 1 - y, h - 1 - x), // TRANSVERSE
                    _ => (w - 1 - y, x), // 8, ROTATE_90: a quarter turn counter-clockwise
                };
                long from = ((long)sy * w + sx) * 3;
                long to = ((long)y * outWidth + x) * 3;
                result[to] = source[from];
                result[to + 1] = source[from + 1];
                result[to + 2] = source[from + 2];
            }
        }

        return new RgbPicture(outWidth, outHeight, result);
    }
}
