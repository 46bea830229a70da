using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Gguf.Segmentation;

/// <summary>
/// One object's mask in its picture, as big_vision's demo places it: the decoded 64 x 64 mask in 8 bits, resized
/// into the object's box with Pillow's bicubic filter. The soft mask is <see cref="BoxMask"/> / 255 inside
/// <see cref="Box"/> and 0 elsewhere; a pixel belongs to the object when its soft value is at least 0.5
/// (<see cref="BoxMask"/> &gt;= 128). Only the box is stored, so a mask in a 12-megapixel picture stays small.
/// </summary>
public sealed class ObjectMask
{
    /// <summary>The 8-bit value from which a pixel belongs to the object (soft mask &gt;= 0.5).</summary>
    public const byte ObjectThreshold = 128;

    private ObjectMask(int pictureWidth, int pictureHeight, PixelBox box, byte[] boxMask)
    {
        PictureWidth = pictureWidth;
        PictureHeight = pictureHeight;
        Box = box;
        BoxMask = boxMask;
        PixelCount = boxMask.Count(v => v >= ObjectThreshold);
    }

    public int PictureWidth { get; }

    public int PictureHeight { get; }

    /// <summary>Where the mask lies; X2 and Y2 exclusive.</summary>
    public PixelBox Box { get; }

    /// <summary>The 8-bit mask resized to the box: Box.Height rows of Box.Width bytes.</summary>
    public byte[] BoxMask { get; }

    /// <summary>Pixels of the picture that belong to the object.</summary>
    public int PixelCount { get; }

    /// <summary>
    /// big_vision's demo: <paramref name="mask64"/> to 8 bits, then resized into <paramref name="box"/>, which must
    /// be non-empty and inside the <paramref name="pictureWidth"/> x <paramref name="pictureHeight"/> picture.
    /// </summary>
    public static ObjectMask Place(ReadOnlySpan<float> mask64, PixelBox box, int pictureWidth, int pictureHeight)
    {
        if (box.X1 < 0 || box.Y1 < 0 || box.X2 > pictureWidth || box.Y2 > pictureHeight || box.Width <= 0 || box.Height <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(box), box, $"The box must be non-empty and inside the {pictureWidth} x {pictureHeight} picture.");
        }

        byte[] mask8 = ToEightBit(mask64);
        byte[] resized = PillowBicubic.ResizeGrey(mask8, MaskDecoder.MaskSize, MaskDecoder.MaskSize, box.Width, box.Height);
        return new ObjectMask(pictureWidth, pictureHeight, box, resized);
    }

    /// <summary>
    /// The demo's 8 bits, in float32 as it computes them on the decoder's float32 output: clip(0.5 m + 0.5, 0, 1)
    /// x 255, truncated. A value of 128 or more therefore means m &gt;= 1/255, not m &gt; 0.
    /// </summary>
    public static byte[] ToEightBit(ReadOnlySpan<float> mask64)
    {
        if (mask64.Length != MaskDecoder.MaskSize * MaskDecoder.MaskSize)
        {
            throw new ArgumentException($"A mask has {MaskDecoder.MaskSize} x {MaskDecoder.MaskSize} values, got {mask64.Length}.", nameof(mask64));
        }

        var bytes = new byte[mask64.Length];
        for (int i = 0; i < mask64.Length; i++)
        {
            float v = (mask64[i] * 0.5f) + 0.5f;
            v = Math.Min(Math.Max(v, 0f), 1f);
            bytes[i] = (byte)(v * 255f);
        }

        return bytes;
    }

    /// <summary>The whole picture's 8-bit soft mask (x 255), row-major: the box mask in its box, 0 outside.</summary>
    public byte[] ToPictureMask()
    {
        var picture = new byte[checked(PictureWidth * PictureHeight)];
        for (int row = 0; row < Box.Height; row++)
        {
            BoxMask.AsSpan(row * Box.Width, Box.Width).CopyTo(picture.AsSpan((Box.Y1 + row) * PictureWidth + Box.X1));
        }

        return picture;
    }

    /// <summary>
    /// COCO's run-length counts of the binary mask over the whole picture, read column by column (Fortran order), as
    /// pycocotools' <c>mask.encode</c> makes them: alternating runs of 0 and 1, starting with 0s.
    /// </summary>
    public uint[] RunLengths()
    {
        var runs = new List<uint>();
        uint run = 0;
        bool current = false;
        long background = (long)Box.X1 * PictureHeight;
        run += checked((uint)background);
        for (int column = 0; column < Box.Width; column++)
        {
            Extend(ref run, ref current, runs, false, Box.Y1);
            for (int row = 0; row < Box.Height; row++)
            {
                Extend(ref run, ref current, runs, BoxMask[row * Box.Width + column] >= ObjectThreshold, 1);
            }

            Extend(ref run, ref current, runs, false, PictureHeight - Box.Y2);
        }

        Extend(ref run, ref current, runs, false, checked((uint)((long)(PictureWidth - Box.X2) * PictureHeight)));
        runs.Add(run);
        return [.. runs];
    }

    /// <summary>The mask in COCO's compressed RLE (the "counts" string of pycocotools).</summary>
    public string ToCocoRle() => CocoRle.ToString(RunLengths());

    private static void Extend(ref uint run, ref bool current, List<uint> runs, bool value, long length)
    {
        if (length == 0)
        {
            return;
        }

        if (value != current)
        {
            runs.Add(run);
            run = 0;
            current = value;
        }

        run = checked(run + (uint)length);
    }
}
