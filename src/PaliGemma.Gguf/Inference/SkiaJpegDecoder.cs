using System.Runtime.InteropServices;
using SkiaSharp;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// JPEG through Skia's codec, which is libjpeg-turbo with its default settings (accurate integer IDCT, fancy
/// chroma upsampling, libjpeg's fixed-point YCbCr tables, Adobe CMYK inverted): the decoder Pillow uses, so
/// every file of the decoding reference set comes out byte for byte as Pillow's. ImageSharp's own JPEG decoder
/// differs by up to 89 levels at sharp colour edges (docs/DESIGN.md, "Decoding", has the comparison).
/// </summary>
internal static class SkiaJpegDecoder
{
    /// <summary>The header: size and EXIF orientation (1..8, 1 when absent), without decoding pixels.</summary>
    public static (int Width, int Height, int Orientation) Identify(Stream stream, string name)
    {
        using var codec = Open(stream, name);
        return (codec.Info.Width, codec.Info.Height, (int)codec.EncodedOrigin);
    }

    /// <summary>Decodes as stored (no orientation applied); the caller checked the size against its budget.</summary>
    public static RgbPicture Decode(Stream stream, string name)
    {
        using var codec = Open(stream, name);
        int width = codec.Info.Width;
        int height = codec.Info.Height;
        // Row by row into a one-row buffer: the full picture is held once, as RGB.
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        SKCodecResult started = codec.StartScanlineDecode(info);
        if (started != SKCodecResult.Success)
        {
            throw PaliGemmaException.InFile(name, $"cannot decode the JPEG image: {Describe(started)}");
        }

        var rgb = new byte[(long)width * height * 3];
        var row = new byte[width * 4];
        var pin = GCHandle.Alloc(row, GCHandleType.Pinned);
        try
        {
            for (int y = 0; y < height; y++)
            {
                if (codec.GetScanlines(pin.AddrOfPinnedObject(), 1, row.Length) != 1)
                {
                    throw PaliGemmaException.InFile(name, $"cannot decode the JPEG image, it is corrupt or truncated: row {y} of {height} did not decode");
                }

                Span<byte> destination = rgb.AsSpan((int)((long)y * width * 3), width * 3);
                for (int x = 0; x < width; x++)
                {
                    destination[3 * x] = row[4 * x];
                    destination[3 * x + 1] = row[4 * x + 1];
                    destination[3 * x + 2] = row[4 * x + 2];
                }
            }
        }
        finally
        {
            pin.Free();
        }

        return new RgbPicture(width, height, rgb);
    }

    private static SKCodec Open(Stream stream, string name)
    {
        // SKManagedStream reads the caller's stream in place, from its current position; the caller keeps it.
        var skStream = new SKManagedStream(stream, disposeManagedStream: false);
        SKCodec? codec = SKCodec.Create(skStream, out SKCodecResult result);
        if (codec is null)
        {
            skStream.Dispose();
            throw PaliGemmaException.InFile(name, $"cannot read the JPEG header: {Describe(result)}");
        }

        return codec;
    }

    private static string Describe(SKCodecResult result) => result switch
    {
        SKCodecResult.IncompleteInput => "it is truncated",
        SKCodecResult.ErrorInInput => "the data is corrupt",
        SKCodecResult.InvalidInput => "the data is invalid",
        SKCodecResult.Unimplemented => "it uses a JPEG feature the decoder does not support",
        SKCodecResult.InternalError => "the decoder failed",
        _ => $"the decoder said {result}",
    };
}
