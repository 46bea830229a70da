using System.Buffers.Binary;
using System.IO.Hashing;
using System.IO.Compression;
using System.Text;

namespace PaliGemma.Gguf.Segmentation;

/// <summary>
/// A NumPy <c>.npz</c> file: a ZIP archive with one <c>KEY.npy</c> entry per array, deflated
/// (<c>np.savez_compressed</c>) or stored (<c>np.savez</c>). Arrays are read one at a time, on request, so keys
/// nobody asks for are never decoded whatever their dtype.
/// </summary>
internal sealed class NpzArchive : IDisposable
{
    private const string EntrySuffix = ".npy";

    private readonly ZipArchive _zip;
    private readonly Dictionary<string, ZipArchiveEntry> _entries;

    private NpzArchive(string path, ZipArchive zip, Dictionary<string, ZipArchiveEntry> entries)
    {
        Path = path;
        _zip = zip;
        _entries = entries;
    }

    public string Path { get; }

    public IReadOnlyCollection<string> Keys => _entries.Keys;

    /// <summary>Opens the archive and lists its keys. Throws <see cref="PaliGemmaException"/> naming the file when it is not a ZIP.</summary>
    public static NpzArchive Open(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw PaliGemmaException.InFile(path, $"cannot open: {e.Message}", e);
        }

        try
        {
            var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: false);
            var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
            foreach (ZipArchiveEntry entry in zip.Entries)
            {
                if (!entry.FullName.EndsWith(EntrySuffix, StringComparison.Ordinal))
                {
                    continue;
                }

                string key = entry.FullName[..^EntrySuffix.Length];
                if (!entries.TryAdd(key, entry))
                {
                    zip.Dispose();
                    throw PaliGemmaException.InFile(path, $"holds the key '{key}' twice");
                }
            }

            return new NpzArchive(path, zip, entries);
        }
        catch (InvalidDataException e)
        {
            stream.Dispose();
            throw PaliGemmaException.InFile(path, $"not a complete NumPy .npz file (a ZIP archive; truncated, or another format): {OneLine(e.Message)}", e);
        }
        catch (PaliGemmaException)
        {
            stream.Dispose();
            throw;
        }
    }

    public bool Contains(string key) => _entries.ContainsKey(key);

    /// <summary>
    /// The array under <paramref name="key"/> as float32 in C (row-major) order, with its shape. Float arrays of
    /// 2, 4 or 8 bytes are converted; Fortran-order arrays are reordered. Throws <see cref="PaliGemmaException"/>
    /// naming the file and the key when the key is missing, not a float array, or its data is not what its header says.
    /// </summary>
    public (float[] Values, int[] Shape) ReadFloat32(string key)
    {
        if (!_entries.TryGetValue(key, out ZipArchiveEntry? entry))
        {
            throw Problem(key, "is missing");
        }

        try
        {
            using Stream stream = entry.Open();
            NpyHeader header = NpyHeader.Read(stream, key, this);
            if (header.Kind != 'f')
            {
                throw Problem(key, $"has dtype '{header.Descr}', expected a floating-point array ('<f4')");
            }

            long expected = checked(header.HeaderBytes + header.ElementCount * header.ItemSize);
            if (entry.Length != expected)
            {
                throw Problem(key, $"has a header saying {header.Describe()} ({expected - header.HeaderBytes} bytes of data) but the entry holds {entry.Length - header.HeaderBytes}");
            }

            byte[] raw = new byte[checked((int)(header.ElementCount * header.ItemSize))];
            int read = stream.ReadAtLeast(raw, raw.Length, throwOnEndOfStream: false);
            if (read != raw.Length)
            {
                throw Problem(key, $"is truncated: {read} of {raw.Length} bytes of data");
            }

            VerifyChecksum(stream, entry, header, raw, key);
            float[] values = Convert(raw, header);
            if (header.FortranOrder)
            {
                values = FortranToC(values, header.Shape);
            }

            return (values, header.Shape);
        }
        catch (InvalidDataException e)
        {
            throw Problem(key, $"cannot be decompressed (damaged or truncated file): {OneLine(e.Message)}", e);
        }
        catch (IOException e)
        {
            throw Problem(key, $"cannot be read: {OneLine(e.Message)}", e);
        }
        catch (OverflowException e)
        {
            throw Problem(key, "declares an array too large to load", e);
        }
    }

    public void Dispose() => _zip.Dispose();

    internal PaliGemmaException Problem(string key, string problem, Exception? inner = null) =>
        inner is null
            ? PaliGemmaException.InFile(Path, $"key '{key}' {problem}")
            : PaliGemmaException.InFile(Path, $"key '{key}' {problem}", inner);

    /// <summary>
    /// ZipArchive hands out the bytes without checking them against the entry's CRC-32, and a damaged stored (or even
    /// deflated) entry can still decode: without this a flipped byte would silently become a wrong weight.
    /// </summary>
    private void VerifyChecksum(Stream stream, ZipArchiveEntry entry, NpyHeader header, byte[] data, string key)
    {
        var crc = new Crc32();
        // The header is short and was read already; re-reading it from a fresh stream keeps Read simple.
        using (Stream again = entry.Open())
        {
            byte[] headerBytes = new byte[header.HeaderBytes];
            again.ReadExactly(headerBytes);
            crc.Append(headerBytes);
        }

        crc.Append(data);
        if (stream.ReadByte() >= 0 || crc.GetCurrentHashAsUInt32() != entry.Crc32)
        {
            throw Problem(key, "is damaged: its bytes do not match the archive's CRC-32 checksum");
        }
    }

    private static float[] Convert(byte[] raw, NpyHeader header)
    {
        var values = new float[header.ElementCount];
        ReadOnlySpan<byte> bytes = raw;
        bool little = header.LittleEndian;
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = header.ItemSize switch
            {
                2 => (float)(little ? BinaryPrimitives.ReadHalfLittleEndian(bytes.Slice(2 * i)) : BinaryPrimitives.ReadHalfBigEndian(bytes.Slice(2 * i))),
                4 => little ? BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(4 * i)) : BinaryPrimitives.ReadSingleBigEndian(bytes.Slice(4 * i)),
                _ => (float)(little ? BinaryPrimitives.ReadDoubleLittleEndian(bytes.Slice(8 * i)) : BinaryPrimitives.ReadDoubleBigEndian(bytes.Slice(8 * i))),
            };
        }

        return values;
    }

    /// <summary>Fortran order: the first index varies fastest. Reorders into C order, where the last one does.</summary>
    private static float[] FortranToC(float[] fortran, int[] shape)
    {
        if (shape.Length < 2)
        {
            return fortran;
        }

        var c = new float[fortran.Length];
        var index = new int[shape.Length];
        for (int flat = 0; flat < c.Length; flat++)
        {
            // index walks C order (last axis fastest); its Fortran offset is sum index[d] * prod(shape[0..d)).
            long offset = 0;
            long stride = 1;
            for (int d = 0; d < shape.Length; d++)
            {
                offset += index[d] * stride;
                stride *= shape[d];
            }

            c[flat] = fortran[offset];
            for (int d = shape.Length - 1; d >= 0; d--)
            {
                if (++index[d] < shape[d])
                {
                    break;
                }

                index[d] = 0;
            }
        }

        return c;
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    /// <summary>
    /// The header of a <c>.npy</c> array (numpy/lib/format.py): magic "\x93NUMPY", version, a little-endian header
    /// length (2 bytes in version 1, 4 in 2 and 3), then a Python dict literal with 'descr', 'fortran_order' and 'shape'.
    /// </summary>
    private sealed record NpyHeader(string Descr, char Kind, int ItemSize, bool LittleEndian, bool FortranOrder, int[] Shape, long HeaderBytes)
    {
        private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
        private const int MaxHeaderLength = 1 << 20;

        public int ElementCount
        {
            get
            {
                long count = 1;
                foreach (int dimension in Shape)
                {
                    count = checked(count * dimension);
                }

                return checked((int)count);
            }
        }

        public string Describe() => $"dtype '{Descr}' shape ({string.Join(", ", Shape)})";

        public static NpyHeader Read(Stream stream, string key, NpzArchive archive)
        {
            Span<byte> prefix = stackalloc byte[12];
            if (stream.ReadAtLeast(prefix[..8], 8, throwOnEndOfStream: false) != 8 || !prefix[..6].SequenceEqual(Magic))
            {
                throw archive.Problem(key, "is not a NumPy .npy array (no \\x93NUMPY magic)");
            }

            byte major = prefix[6];
            int lengthBytes = major switch
            {
                1 => 2,
                2 or 3 => 4,
                _ => throw archive.Problem(key, $"has .npy format version {major}.{prefix[7]}, which this reader does not know"),
            };
            Span<byte> lengthField = prefix.Slice(8, lengthBytes);
            if (stream.ReadAtLeast(lengthField, lengthBytes, throwOnEndOfStream: false) != lengthBytes)
            {
                throw archive.Problem(key, "is truncated in its header");
            }

            long length = lengthBytes == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(lengthField) : BinaryPrimitives.ReadUInt32LittleEndian(lengthField);
            if (length > MaxHeaderLength)
            {
                throw archive.Problem(key, $"has a {length}-byte .npy header, more than any array needs");
            }

            byte[] text = new byte[length];
            if (stream.ReadAtLeast(text, text.Length, throwOnEndOfStream: false) != text.Length)
            {
                throw archive.Problem(key, "is truncated in its header");
            }

            // Version 3 is version 2 with a UTF-8 header (for structured dtypes' field names); 1 and 2 are Latin-1.
            string dict = major == 3 ? Encoding.UTF8.GetString(text) : Encoding.Latin1.GetString(text);
            var parsed = HeaderDictionary.Parse(dict, key, archive);
            return FromDictionary(parsed, 8 + lengthBytes + length, key, archive);
        }

        private static NpyHeader FromDictionary(Dictionary<string, object> dict, long headerBytes, string key, NpzArchive archive)
        {
            if (!dict.TryGetValue("descr", out object? descrValue) || descrValue is not string descr)
            {
                throw archive.Problem(key, "has a .npy header without a simple 'descr' (structured arrays are not supported)");
            }

            if (!dict.TryGetValue("fortran_order", out object? orderValue) || orderValue is not bool fortran)
            {
                throw archive.Problem(key, "has a .npy header without 'fortran_order'");
            }

            if (!dict.TryGetValue("shape", out object? shapeValue) || shapeValue is not List<long> dimensions)
            {
                throw archive.Problem(key, "has a .npy header without a 'shape' tuple");
            }

            var shape = new int[dimensions.Count];
            for (int i = 0; i < shape.Length; i++)
            {
                if (dimensions[i] is < 0 or > int.MaxValue)
                {
                    throw archive.Problem(key, $"has an impossible shape ({string.Join(", ", dimensions)})");
                }

                shape[i] = (int)dimensions[i];
            }

            // descr is byte order ('<' little, '>' big, '|' not applicable, '=' native) + kind + item size, e.g. '<f4'.
            if (descr.Length < 3 || descr[0] is not ('<' or '>' or '|' or '=') || !int.TryParse(descr.AsSpan(2), out int itemSize))
            {
                throw archive.Problem(key, $"has dtype '{descr}', which this reader does not know");
            }

            bool little = descr[0] != '>' && (descr[0] != '=' || BitConverter.IsLittleEndian);
            char kind = descr[1];
            if (kind == 'f' && itemSize is not (2 or 4 or 8))
            {
                throw archive.Problem(key, $"has dtype '{descr}', a float size this reader does not convert");
            }

            return new NpyHeader(descr, kind, itemSize, little, fortran, shape, headerBytes);
        }
    }

    /// <summary>
    /// The subset of Python literal syntax numpy writes in a .npy header: a dict with string keys whose values are
    /// strings, True/False, or tuples of integers (possibly empty, with trailing commas).
    /// </summary>
    private ref struct HeaderDictionary
    {
        private readonly ReadOnlySpan<char> _text;
        private readonly string _key;
        private readonly NpzArchive _archive;
        private int _position;

        private HeaderDictionary(ReadOnlySpan<char> text, string key, NpzArchive archive)
        {
            _text = text;
            _key = key;
            _archive = archive;
            _position = 0;
        }

        public static Dictionary<string, object> Parse(string text, string key, NpzArchive archive)
        {
            var parser = new HeaderDictionary(text, key, archive);
            var result = new Dictionary<string, object>(StringComparer.Ordinal);
            parser.Expect('{');
            while (!parser.TryConsume('}'))
            {
                string name = parser.ReadString();
                parser.Expect(':');
                result[name] = parser.ReadValue();
                if (!parser.TryConsume(','))
                {
                    parser.Expect('}');
                    break;
                }
            }

            return result;
        }

        private object ReadValue()
        {
            SkipSpace();
            if (_position < _text.Length && _text[_position] is '\'' or '"')
            {
                return ReadString();
            }

            if (TryWord("True"))
            {
                return true;
            }

            if (TryWord("False"))
            {
                return false;
            }

            if (TryConsume('('))
            {
                var items = new List<long>();
                while (!TryConsume(')'))
                {
                    items.Add(ReadInteger());
                    if (!TryConsume(','))
                    {
                        Expect(')');
                        break;
                    }
                }

                return items;
            }

            // A list (a structured dtype's descr) or anything else: not an array this reader loads.
            return Fail<object>("a value it cannot read");
        }

        private string ReadString()
        {
            SkipSpace();
            if (_position >= _text.Length || _text[_position] is not ('\'' or '"'))
            {
                return Fail<string>("a quoted string");
            }

            char quote = _text[_position++];
            int start = _position;
            while (_position < _text.Length && _text[_position] != quote)
            {
                _position++;
            }

            if (_position >= _text.Length)
            {
                return Fail<string>("the end of a string");
            }

            return _text[start.._position++].ToString();
        }

        private long ReadInteger()
        {
            SkipSpace();
            int start = _position;
            while (_position < _text.Length && char.IsAsciiDigit(_text[_position]))
            {
                _position++;
            }

            // A trailing 'L' is how Python 2 wrote long integers.
            bool parsed = long.TryParse(_text[start.._position], out long value);
            if (_position < _text.Length && _text[_position] == 'L')
            {
                _position++;
            }

            return parsed ? value : Fail<long>("a non-negative integer");
        }

        private bool TryWord(string word)
        {
            if (_text[_position..].StartsWith(word, StringComparison.Ordinal))
            {
                _position += word.Length;
                return true;
            }

            return false;
        }

        private bool TryConsume(char c)
        {
            SkipSpace();
            if (_position < _text.Length && _text[_position] == c)
            {
                _position++;
                return true;
            }

            return false;
        }

        private void Expect(char c)
        {
            if (!TryConsume(c))
            {
                Fail<bool>($"'{c}'");
            }
        }

        private void SkipSpace()
        {
            while (_position < _text.Length && char.IsWhiteSpace(_text[_position]))
            {
                _position++;
            }
        }

        private readonly T Fail<T>(string expected) =>
            throw _archive.Problem(_key, $"has a .npy header that is not a Python dict literal (expected {expected} at character {_position})");
    }
}
