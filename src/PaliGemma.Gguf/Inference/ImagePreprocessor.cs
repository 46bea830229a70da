namespace PaliGemma.Gguf.Inference;

/// <summary>S x S RGB pixels ready for mtmd, plus the original size (detection maps boxes back onto it).</summary>
/// <param name="Size">The side of the square, in pixels.</param>
/// <param name="Rgb">Size * Size * 3 bytes, row-major, R G B interleaved.</param>
/// <param name="OriginalWidth">The decoded image's width before the resize.</param>
/// <param name="OriginalHeight">The decoded image's height before the resize.</param>
public sealed record PreparedImage(int Size, byte[] Rgb, int OriginalWidth, int OriginalHeight);

/// <summary>
/// Decodes a picture and resizes it the way Hugging Face's SiglipImageProcessor does for PaliGemma:
/// PIL's <c>convert("RGB")</c> then <c>resize((S, S), BICUBIC)</c>, a stretch that ignores the aspect ratio.
/// The resize is a port of Pillow's integer resampler (libImaging/Resample.c), so the pixels the vision
/// tower sees are the ones the reference implementation feeds it, not merely similar ones. transformers 5.x
/// resizes with torchvision instead, the same algorithm with coarser fixed-point weights:
/// <see cref="BicubicVariant.Torchvision"/> reproduces that one.
/// </summary>
/// <remarks>
/// The decoded picture is Pillow's <c>Image.open</c> → <c>ImageOps.exif_transpose</c> →
/// <c>convert("RGB")</c>, byte for byte (<see cref="PictureDecoder"/>; the decoding reference set proves it per format).
/// </remarks>
public static class ImagePreprocessor
{
    /// <summary>
    /// The most pixels an image may declare. Headers are a few bytes but promise width x height pixels:
    /// a 100-byte PNG can claim 40000 x 40000 and make a decoder allocate gigabytes (a decompression bomb).
    /// 100 MP is above what nearly every camera writes (pass a larger budget for the few 108-200 MP phone modes)
    /// and costs at most 300 MB as RGB, which a machine that runs a 3B model has.
    /// </summary>
    public const long DefaultMaxPixels = 100_000_000;

    /// <summary>Reads the image at <paramref name="path"/>; throws <see cref="PaliGemmaException"/> naming the file when it cannot.</summary>
    /// <param name="applyExifOrientation">
    /// Turn the picture as its EXIF Orientation tag says, as the reference does (default); false for pixels
    /// already oriented by the caller, whose stale tag would otherwise turn them a second time.
    /// </param>
    public static PreparedImage Load(string path, int size, long maxPixels = DefaultMaxPixels, BicubicVariant variant = BicubicVariant.Pillow, bool applyExifOrientation = true)
    {
        ArgumentNullException.ThrowIfNull(path);
        ValidateArguments(size, maxPixels);
        using var stream = OpenFile(path);
        return Load(stream, path, size, maxPixels, variant, applyExifOrientation);
    }

    /// <summary>
    /// The decoded picture at full size, before any resize, with the same checks as
    /// <see cref="Load(string, int, long, BicubicVariant, bool)"/>: what the model sees, for drawing on.
    /// </summary>
    internal static RgbPicture DecodePicture(string path, long maxPixels = DefaultMaxPixels, bool applyExifOrientation = true)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPixels);
        using var stream = OpenFile(path);
        return PictureDecoder.Decode(stream, path, maxPixels, applyExifOrientation);
    }

    /// <summary>
    /// The picture's size as the model and the boxes see it (after the EXIF orientation unless
    /// <paramref name="applyExifOrientation"/> is false), with the same checks as <see cref="Load(string, int, long, BicubicVariant, bool)"/>.
    /// </summary>
    public static (int Width, int Height) DecodedSize(string path, bool applyExifOrientation = true)
    {
        RgbPicture picture = DecodePicture(path, applyExifOrientation: applyExifOrientation);
        return (picture.Width, picture.Height);
    }

    private static FileStream OpenFile(string path)
    {
        if (!File.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "image file not found");
        }

        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw PaliGemmaException.InFile(path, $"cannot open the image: {e.Message.ReplaceLineEndings(" ").Trim()}", e);
        }
    }

    /// <summary>
    /// Reads an image from <paramref name="stream"/> (from its current position); <paramref name="displayName"/>
    /// names it in error messages. Throws <see cref="PaliGemmaException"/> when the bytes are not a readable image.
    /// </summary>
    public static PreparedImage Load(Stream stream, string displayName, int size, long maxPixels = DefaultMaxPixels, BicubicVariant variant = BicubicVariant.Pillow, bool applyExifOrientation = true)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(displayName);
        ValidateArguments(size, maxPixels);
        if (!stream.CanRead)
        {
            throw new ArgumentException("The stream must be readable.", nameof(stream));
        }

        RgbPicture picture = PictureDecoder.Decode(stream, displayName, maxPixels, applyExifOrientation);
        byte[] rgb = PillowBicubic.Resize(picture.Rgb, picture.Width, picture.Height, size, size, variant);
        return new PreparedImage(size, rgb, picture.Width, picture.Height);
    }

    private static void ValidateArguments(int size, long maxPixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPixels);
        // The result is one byte array.
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)size * size * 3, Array.MaxLength, nameof(size));
    }
}
