using SixLabors.ImageSharp.PixelFormats;

namespace PaliGemma.Gguf.Tasks;

/// <summary>
/// Box colours: ten strong colours far apart from each other, handed out to labels in the order they first
/// appear, so the first ten labels of a picture never share a colour and a label keeps its colour throughout.
/// </summary>
internal sealed class LabelPalette
{
    internal static readonly Rgba32[] Colors =
    [
        new(230, 25, 75),   // red
        new(60, 180, 75),   // green
        new(255, 225, 25),  // yellow
        new(0, 130, 200),   // blue
        new(245, 130, 48),  // orange
        new(145, 30, 180),  // purple
        new(70, 240, 240),  // cyan
        new(240, 50, 230),  // magenta
        new(170, 110, 40),  // brown
        new(0, 0, 128),     // navy
    ];

    private static readonly Rgba32 Black = new(0, 0, 0);
    private static readonly Rgba32 White = new(255, 255, 255);

    private readonly Dictionary<string, Rgba32> _assigned = new(StringComparer.Ordinal);

    public Rgba32 ColorOf(string label)
    {
        if (!_assigned.TryGetValue(label, out Rgba32 color))
        {
            color = Colors[_assigned.Count % Colors.Length];
            _assigned.Add(label, color);
        }

        return color;
    }

    /// <summary>
    /// Black or white, whichever contrasts more with <paramref name="background"/> by the WCAG contrast ratio.
    /// The label sits on an opaque patch of the box colour, so this keeps it legible whatever the picture is.
    /// </summary>
    public static Rgba32 TextColorOn(Rgba32 background)
    {
        double luminance = 0.2126 * Linear(background.R) + 0.7152 * Linear(background.G) + 0.0722 * Linear(background.B);
        double contrastWithWhite = 1.05 / (luminance + 0.05);
        double contrastWithBlack = (luminance + 0.05) / 0.05;
        return contrastWithBlack >= contrastWithWhite ? Black : White;
    }

    private static double Linear(byte channel)
    {
        double c = channel / 255.0;
        return c <= 0.04045 ? c / 12.92 : Math.Pow((c + 0.055) / 1.055, 2.4);
    }
}
