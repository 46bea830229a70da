using System.Text;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Gguf;

/// <summary>
/// A GGUF file's metadata and tensor table, read and checked without loading tensor data:
/// every length is checked against the file before anything is allocated, so a hostile file
/// gets a <see cref="PaliGemmaException"/>, never an out-of-memory or a native abort.
/// </summary>
public sealed class GgufFile
{
    private const long MaxStringBytes = 64L << 20;
    private const long MaxTensorCount = 1L << 20;
    private const long MaxMetadataCount = 1L << 20;
    private const ulong MinimumMetadataBytes = 8 + 4 + 1;
    private const ulong MinimumTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

    private GgufFile(string path, uint version, IReadOnlyList<KeyValuePair<string, GgufValue>> metadata, IReadOnlyList<GgufTensorInfo> tensors, long dataOffset, long fileLength)
    {
        Path = path;
        Version = version;
        MetadataList = metadata;
        Metadata = metadata.GroupBy(m => m.Key).ToDictionary(g => g.Key, g => g.Last().Value, StringComparer.Ordinal);
        Tensors = tensors;
        DataOffset = dataOffset;
        FileLength = fileLength;
    }

    public string Path { get; }

    public uint Version { get; }

    public IReadOnlyList<KeyValuePair<string, GgufValue>> MetadataList { get; }

    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }

    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>File offset of the tensor data section.</summary>
    public long DataOffset { get; }

    public long FileLength { get; }

    public string? Architecture => GetString("general.architecture");

    public string? GetString(string key) => Metadata.TryGetValue(key, out var v) && v.Value is string s ? s : null;

    public long? GetInteger(string key)
    {
        if (!Metadata.TryGetValue(key, out var v) || v.Type is GgufValueType.String or GgufValueType.Array or GgufValueType.Float32 or GgufValueType.Float64 or GgufValueType.Bool)
        {
            return null;
        }

        // Convert.ToInt64 throws OverflowException on a uint64 above long.MaxValue.
        if (v.Value is ulong big && big > long.MaxValue)
        {
            throw PaliGemmaException.InFile(Path, $"metadata '{TensorNames.ForMessage(key)}' is {big}, too large for a signed 64-bit integer");
        }

        return Convert.ToInt64(v.Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    public double? GetFloat(string key) => Metadata.TryGetValue(key, out var v) && v.Type is GgufValueType.Float32 or GgufValueType.Float64
        ? Convert.ToDouble(v.Value, System.Globalization.CultureInfo.InvariantCulture)
        : null;

    public GgufTensorInfo? FindTensor(string name) => Tensors.FirstOrDefault(t => t.Name == name);

    /// <summary>Reads bytes of a tensor's data, starting <paramref name="byteOffset"/> into it.</summary>
    public void ReadTensorBytes(GgufTensorInfo tensor, long byteOffset, Span<byte> destination)
    {
        if (byteOffset < 0 || byteOffset + destination.Length > tensor.ByteCount)
        {
            throw new ArgumentOutOfRangeException(nameof(byteOffset));
        }

        using var handle = File.OpenHandle(Path);
        int read = RandomAccess.Read(handle, destination, DataOffset + tensor.Offset + byteOffset);
        if (read != destination.Length)
        {
            throw PaliGemmaException.InFile(Path, $"tensor '{TensorNames.ForMessage(tensor.Name)}' is truncated");
        }
    }

    public static GgufFile Open(string path)
    {
        if (!File.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "file not found");
        }

        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
            return Parse(path, stream, reader);
        }
        catch (EndOfStreamException e)
        {
            throw PaliGemmaException.InFile(path, "truncated GGUF header", e);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot read: {e.Message}", e);
        }
    }

    private static GgufFile Parse(string path, FileStream stream, BinaryReader reader)
    {
        long length = stream.Length;
        PaliGemmaException Bad(string problem) => PaliGemmaException.InFile(path, problem);

        if (length < 24 || reader.ReadUInt32() != GgufFormat.Magic)
        {
            throw Bad("not a GGUF file (no GGUF magic)");
        }

        uint version = reader.ReadUInt32();
        if (version is not (2 or 3))
        {
            throw Bad($"unsupported GGUF version {version} (2 and 3 are supported)");
        }

        ulong tensorCount = reader.ReadUInt64();
        ulong metadataCount = reader.ReadUInt64();
        if (tensorCount > MaxTensorCount || metadataCount > MaxMetadataCount)
        {
            throw Bad($"implausible counts: {tensorCount} tensors, {metadataCount} metadata entries");
        }

        // The lists below are sized from these counts: each entry takes some bytes of the file
        // (a metadata entry at least a key length, a type and a byte; a tensor at least a name length,
        // a dimension count, one dimension, a type and an offset), so the file bounds the counts.
        long rest = length - stream.Position;
        if (metadataCount > (ulong)rest / MinimumMetadataBytes || tensorCount > (ulong)rest / MinimumTensorInfoBytes
            || metadataCount * MinimumMetadataBytes + tensorCount * MinimumTensorInfoBytes > (ulong)rest)
        {
            throw Bad($"{tensorCount} tensors and {metadataCount} metadata entries cannot fit in the {rest} bytes after the header: truncated?");
        }

        string ReadString()
        {
            ulong size = reader.ReadUInt64();
            if (size > MaxStringBytes || (long)size > length - stream.Position)
            {
                throw Bad($"string of {size} bytes at offset {stream.Position - 8} runs past the file or the {MaxStringBytes}-byte limit");
            }

            return Encoding.UTF8.GetString(reader.ReadBytes((int)size));
        }

        object ReadScalar(GgufValueType type) => type switch
        {
            GgufValueType.UInt8 => reader.ReadByte(),
            GgufValueType.Int8 => reader.ReadSByte(),
            GgufValueType.UInt16 => reader.ReadUInt16(),
            GgufValueType.Int16 => reader.ReadInt16(),
            GgufValueType.UInt32 => reader.ReadUInt32(),
            GgufValueType.Int32 => reader.ReadInt32(),
            GgufValueType.Float32 => reader.ReadSingle(),
            GgufValueType.Bool => reader.ReadByte() switch
            {
                0 => false,
                1 => true,
                var b => throw Bad($"bool value {b} at offset {stream.Position - 1}"),
            },
            GgufValueType.String => ReadString(),
            GgufValueType.UInt64 => reader.ReadUInt64(),
            GgufValueType.Int64 => reader.ReadInt64(),
            GgufValueType.Float64 => reader.ReadDouble(),
            _ => throw Bad($"unknown metadata value type {(uint)type} at offset {stream.Position - 4}"),
        };

        var metadata = new List<KeyValuePair<string, GgufValue>>((int)metadataCount);
        for (ulong i = 0; i < metadataCount; i++)
        {
            string key = ReadString();
            var type = (GgufValueType)reader.ReadUInt32();
            GgufValue value;
            if (type == GgufValueType.Array)
            {
                var elementType = (GgufValueType)reader.ReadUInt32();
                ulong count = reader.ReadUInt64();
                int minimumSize = MinimumEncodedSize(elementType) ?? throw Bad($"metadata '{TensorNames.ForMessage(key)}': arrays of {(uint)elementType} are not supported");
                if (count > (ulong)(length - stream.Position) / (ulong)minimumSize)
                {
                    throw Bad($"metadata '{TensorNames.ForMessage(key)}': array of {count} elements runs past the end of the file");
                }

                value = new GgufValue(GgufValueType.Array, ReadArray(elementType, (int)count, ReadScalar), elementType);
            }
            else
            {
                value = new GgufValue(type, ReadScalar(type));
            }

            metadata.Add(new(key, value));
        }

        uint alignment = GgufFormat.DefaultAlignment;
        var alignmentEntry = metadata.LastOrDefault(m => m.Key == GgufFormat.AlignmentKey);
        if (alignmentEntry.Value is not null)
        {
            alignment = alignmentEntry.Value.Value is uint a && a > 0 && (a & (a - 1)) == 0 ? a : throw Bad("general.alignment must be a power-of-two uint32");
        }

        var tensors = new List<GgufTensorInfo>((int)tensorCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = ReadString();
            uint dimensionCount = reader.ReadUInt32();
            if (dimensionCount is 0 or > GgufFormat.MaxDimensions)
            {
                throw Bad($"tensor '{TensorNames.ForMessage(name)}' has {dimensionCount} dimensions; 1..{GgufFormat.MaxDimensions} allowed");
            }

            var dimensions = new long[dimensionCount];
            long elements = 1;
            for (int d = 0; d < dimensionCount; d++)
            {
                ulong size = reader.ReadUInt64();
                if (size > long.MaxValue || (elements = MultiplyOrMinusOne(elements, (long)size)) < 0)
                {
                    throw Bad($"tensor '{TensorNames.ForMessage(name)}': dimensions overflow");
                }

                dimensions[d] = (long)size;
            }

            var type = (GgmlType)reader.ReadUInt32();
            if (!GgmlTypes.IsKnown(type))
            {
                throw Bad($"tensor '{TensorNames.ForMessage(name)}' has unknown ggml type {(uint)type}");
            }

            if (dimensions[0] % type.BlockSize() != 0)
            {
                throw Bad($"tensor '{TensorNames.ForMessage(name)}': rows of {dimensions[0]} are not whole {type} blocks of {type.BlockSize()}");
            }

            ulong offset = reader.ReadUInt64();
            if (offset % alignment != 0 || offset > (ulong)length)
            {
                throw Bad($"tensor '{TensorNames.ForMessage(name)}': data offset {offset} is misaligned or past the file");
            }

            if (!names.Add(name))
            {
                throw Bad($"tensor '{TensorNames.ForMessage(name)}' is declared twice");
            }

            var info = new GgufTensorInfo(name, type, dimensions, (long)offset);

            // Not type.RowBytes: its checked arithmetic throws OverflowException on a hostile row length.
            long rowBytes = MultiplyOrMinusOne(info.RowLength / type.BlockSize(), type.BlockBytes());
            if (rowBytes < 0 || MultiplyOrMinusOne(rowBytes, info.RowCount) < 0)
            {
                throw Bad($"tensor '{TensorNames.ForMessage(name)}': byte size overflows");
            }

            tensors.Add(info);
        }

        long dataOffset = GgufFormat.AlignUp(stream.Position, alignment);
        foreach (var tensor in tensors)
        {
            // Subtracted rather than added: the sum of a hostile offset and byte count can overflow.
            if (tensor.ByteCount > length - dataOffset - tensor.Offset)
            {
                throw Bad($"tensor '{TensorNames.ForMessage(tensor.Name)}' ({tensor.Type} {tensor.DimensionsText}) runs past the end of the file: truncated?");
            }
        }

        return new GgufFile(path, version, metadata, tensors, dataOffset, length);
    }

    private static long MultiplyOrMinusOne(long a, long b)
    {
        try
        {
            return checked(a * b);
        }
        catch (OverflowException)
        {
            return -1;
        }
    }

    private static int? MinimumEncodedSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
        _ => null,
    };

    private static Array ReadArray(GgufValueType type, int count, Func<GgufValueType, object> read)
    {
        Array array = type switch
        {
            GgufValueType.UInt8 => new byte[count],
            GgufValueType.Int8 => new sbyte[count],
            GgufValueType.UInt16 => new ushort[count],
            GgufValueType.Int16 => new short[count],
            GgufValueType.UInt32 => new uint[count],
            GgufValueType.Int32 => new int[count],
            GgufValueType.Float32 => new float[count],
            GgufValueType.Bool => new bool[count],
            GgufValueType.String => new string[count],
            GgufValueType.UInt64 => new ulong[count],
            GgufValueType.Int64 => new long[count],
            _ => new double[count],
        };
        for (int i = 0; i < count; i++)
        {
            array.SetValue(read(type), i);
        }

        return array;
    }
}
