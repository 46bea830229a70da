using System.Buffers.Binary;
using System.Text;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Webp;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// ImageSharp 2.x decodes a truncated PNG, JPEG, GIF, BMP or WebP without complaint and leaves the missing rows
/// black, where PIL refuses the file ("image file is truncated"). These walk the file's structure to its end
/// without decoding pixels. TIFF and TGA decoders already fail on truncation; PBM is not checked.
/// </summary>
internal static class ImageCompleteness
{
    /// <summary>What is missing from the image starting at the stream's position, or null when it is whole.</summary>
    public static string? FindProblem(Stream stream, IImageFormat format)
    {
        var reader = new ByteReader(stream);
        return format switch
        {
            PngFormat => Png(reader),
            JpegFormat => Jpeg(reader),
            GifFormat => Gif(reader),
            BmpFormat => Bmp(reader),
            WebpFormat => Webp(reader),
            _ => null,
        };
    }

    private static string? Png(ByteReader reader)
    {
        Span<byte> header = stackalloc byte[8];
        if (!reader.TryRead(header))
        {
            return "it ends inside the signature";
        }

        // PIL reads chunks up to the end of the pixel data; IEND, the last chunk, proves nothing was cut.
        while (reader.TryRead(header))
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header);
            // A chunk type is four ASCII letters; anything else is shown in hex so the message stays one printable line.
            string type = header[4..].ToArray().All(b => char.IsAsciiLetter((char)b)) ? Encoding.ASCII.GetString(header[4..]) : "0x" + Convert.ToHexString(header[4..]);
            if (type == "IEND")
            {
                return null;
            }

            if (length > int.MaxValue)
            {
                return $"chunk '{type}' declares {length} bytes, more than PNG allows";
            }

            if (!reader.TrySkip(length + 4L))
            {
                return $"it ends inside chunk '{type}'";
            }
        }

        return "it ends before the IEND chunk";
    }

    private static string? Jpeg(ByteReader reader)
    {
        if (reader.ReadByte() != 0xFF || reader.ReadByte() != 0xD8)
        {
            return "it does not start with the start-of-image marker";
        }

        while (true)
        {
            int marker = reader.ReadByte();
            if (marker < 0)
            {
                return "it ends before the end-of-image marker";
            }

            if (marker != 0xFF)
            {
                return $"byte 0x{marker:X2} where a marker should be";
            }

            // Any number of 0xFF fill bytes may precede a marker code.
            do
            {
                marker = reader.ReadByte();
            }
            while (marker == 0xFF);

            if (marker < 0)
            {
                return "it ends before the end-of-image marker";
            }

            if (marker == 0xD9)
            {
                return null;
            }

            // TEM and RST0..7 stand alone; every other marker is followed by a length that includes itself.
            if (marker == 0x01 || marker is >= 0xD0 and <= 0xD7)
            {
                continue;
            }

            int high = reader.ReadByte();
            int low = reader.ReadByte();
            if (low < 0)
            {
                return "it ends inside a marker segment";
            }

            int length = (high << 8) | low;
            if (length < 2 || !reader.TrySkip(length - 2))
            {
                return "it ends inside a marker segment";
            }

            if (marker == 0xDA && !SkipEntropyCodedData(reader))
            {
                return "it ends inside the compressed scan data";
            }
        }
    }

    /// <summary>Skips a scan's data up to the next marker (left unread); false at the end of the file.</summary>
    private static bool SkipEntropyCodedData(ByteReader reader)
    {
        while (true)
        {
            int b = reader.ReadByte();
            if (b < 0)
            {
                return false;
            }

            if (b != 0xFF)
            {
                continue;
            }

            int next = reader.PeekByte();
            if (next < 0)
            {
                return false;
            }

            // 0xFF 0x00 is a stuffed data byte and RSTn sits inside the scan; anything else ends it.
            if (next == 0x00 || next is >= 0xD0 and <= 0xD7)
            {
                reader.ReadByte();
            }
            else if (next != 0xFF)
            {
                reader.Unread();
                return true;
            }
        }
    }

    private static string? Gif(ByteReader reader)
    {
        Span<byte> screen = stackalloc byte[13];
        if (!reader.TryRead(screen))
        {
            return "it ends inside the header";
        }

        if (!SkipColorTable(reader, screen[10]))
        {
            return "it ends inside the global colour table";
        }

        // Only the first frame is decoded (as by Image.open), so only it has to be whole.
        Span<byte> descriptor = stackalloc byte[9];
        while (true)
        {
            switch (reader.ReadByte())
            {
                case 0x21:
                    if (reader.ReadByte() < 0 || !SkipSubBlocks(reader))
                    {
                        return "it ends inside an extension block";
                    }

                    break;
                case 0x2C:
                    if (!reader.TryRead(descriptor) || !SkipColorTable(reader, descriptor[8]) || reader.ReadByte() < 0 || !SkipSubBlocks(reader))
                    {
                        return "it ends inside the first frame";
                    }

                    return null;
                case 0x3B:
                    return "it has no frame";
                case -1:
                    return "it ends before the first frame";
                case int other:
                    return $"unknown block 0x{other:X2}";
            }
        }
    }

    private static bool SkipColorTable(ByteReader reader, byte flags) =>
        (flags & 0x80) == 0 || reader.TrySkip(3L << ((flags & 7) + 1));

    private static bool SkipSubBlocks(ByteReader reader)
    {
        while (true)
        {
            int size = reader.ReadByte();
            if (size <= 0)
            {
                return size == 0;
            }

            if (!reader.TrySkip(size))
            {
                return false;
            }
        }
    }

    /// <summary>For the BMP starting at the stream's position: whether its declared pixel-data offset lies past the end of the file.</summary>
    public static string? BmpPixelOffsetProblem(Stream stream)
    {
        var reader = new ByteReader(stream);
        Span<byte> header = stackalloc byte[14];
        if (!reader.TryRead(header))
        {
            return "it ends inside the file header";
        }

        long pixelOffset = BinaryPrimitives.ReadUInt32LittleEndian(header[10..]);
        return pixelOffset > reader.Length
            ? $"its pixel data starts at byte {pixelOffset}, past the end of the file ({reader.Length} bytes)"
            : null;
    }

    private static string? Bmp(ByteReader reader)
    {
        Span<byte> header = stackalloc byte[38];
        int read = reader.ReadAtMost(header);
        if (read < 26)
        {
            return "it ends inside the header";
        }

        long pixelOffset = BinaryPrimitives.ReadUInt32LittleEndian(header[10..]);
        bool core = BinaryPrimitives.ReadUInt32LittleEndian(header[14..]) == 12;
        if (!core && read < 38)
        {
            return "it ends inside the header";
        }

        long width = core ? BinaryPrimitives.ReadUInt16LittleEndian(header[18..]) : BinaryPrimitives.ReadInt32LittleEndian(header[18..]);
        long height = core ? BinaryPrimitives.ReadUInt16LittleEndian(header[20..]) : BinaryPrimitives.ReadInt32LittleEndian(header[22..]);
        int bitsPerPixel = BinaryPrimitives.ReadUInt16LittleEndian(header[(core ? 24 : 28)..]);
        uint compression = core ? 0 : BinaryPrimitives.ReadUInt32LittleEndian(header[30..]);
        uint imageSize = core ? 0 : BinaryPrimitives.ReadUInt32LittleEndian(header[34..]);

        // Uncompressed rows (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS) have a known size; compressed ones only a declared one.
        long pixelBytes = compression is 0 or 3 or 6
            ? (Math.Abs(width) * bitsPerPixel + 31) / 32 * 4 * Math.Abs(height)
            : imageSize;
        return reader.Length < pixelOffset + pixelBytes
            ? $"the pixel data needs {pixelOffset + pixelBytes} bytes, the file has {reader.Length}"
            : null;
    }

    private static string? Webp(ByteReader reader)
    {
        Span<byte> header = stackalloc byte[8];
        if (!reader.TryRead(header))
        {
            return "it ends inside the RIFF header";
        }

        long declared = 8L + BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        return reader.Length < declared ? $"its RIFF header declares {declared} bytes, the file has {reader.Length}" : null;
    }

    /// <summary>Buffered forward reading of a seekable stream, with skips that seek; lengths are from the start position.</summary>
    private sealed class ByteReader(Stream stream)
    {
        private readonly long _start = stream.Position;
        private readonly byte[] _buffer = new byte[64 * 1024];
        private int _count;
        private int _next;

        public long Length => stream.Length - _start;

        public int ReadByte()
        {
            if (_next == _count && !Fill())
            {
                return -1;
            }

            return _buffer[_next++];
        }

        public int PeekByte()
        {
            if (_next == _count && !Fill())
            {
                return -1;
            }

            return _buffer[_next];
        }

        /// <summary>Steps back over the byte just read; valid once after <see cref="ReadByte"/>.</summary>
        public void Unread() => _next--;

        public bool TryRead(Span<byte> destination) => ReadAtMost(destination) == destination.Length;

        public int ReadAtMost(Span<byte> destination)
        {
            int done = 0;
            while (done < destination.Length)
            {
                int b = ReadByte();
                if (b < 0)
                {
                    break;
                }

                destination[done++] = (byte)b;
            }

            return done;
        }

        public bool TrySkip(long count)
        {
            long buffered = _count - _next;
            if (count <= buffered)
            {
                _next += (int)count;
                return true;
            }

            long target = stream.Position + (count - buffered);
            _next = _count = 0;
            if (target > stream.Length)
            {
                return false;
            }

            stream.Position = target;
            return true;
        }

        private bool Fill()
        {
            // Keep the last byte so that Unread works across a refill.
            if (_count > 0)
            {
                _buffer[0] = _buffer[_count - 1];
                _next = 1;
                _count = 1;
            }

            int read = stream.Read(_buffer, _count, _buffer.Length - _count);
            if (read == 0)
            {
                _next = _count;
                return false;
            }

            _count += read;
            return true;
        }
    }
}
