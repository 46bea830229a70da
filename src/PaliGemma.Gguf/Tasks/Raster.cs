using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace PaliGemma.Gguf.Tasks;

/// <summary>Filled rectangles by setting pixels, the one primitive boxes and labels need.</summary>
internal static class Raster
{
    /// <summary>Fills [x, x + width) x [y, y + height), clipped to the image.</summary>
    public static void FillRectangle(Image<Rgba32> image, int x, int y, int width, int height, Rgba32 color)
    {
        // long: a box near int.MaxValue plus a width must not wrap round into the image.
        int left = (int)Math.Max(0, (long)x);
        int top = (int)Math.Max(0, (long)y);
        int right = (int)Math.Min(image.Width, (long)x + width);
        int bottom = (int)Math.Min(image.Height, (long)y + height);
        if (left >= right || top >= bottom)
        {
            return;
        }

        image.ProcessPixelRows(accessor =>
        {
            for (int row = top; row < bottom; row++)
            {
                accessor.GetRowSpan(row)[left..right].Fill(color);
            }
        });
    }
}
