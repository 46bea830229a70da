namespace PaliGemma.Gguf.Tasks;

/// <summary>
/// A box in the original picture's pixels. X2 and Y2 are exclusive edges, as in big_vision's demo, which
/// slices <c>mask[y1:y2, x1:x2]</c>: a box over a whole W x H picture is (0, 0, W, H).
/// </summary>
public readonly record struct PixelBox(int X1, int Y1, int X2, int Y2)
{
    public int Width => X2 - X1;

    public int Height => Y2 - Y1;
}
