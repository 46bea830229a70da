using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace PaliGemma.Gguf.Checkpoints;

/// <summary>
/// A memory-mapped safetensors file: the header is parsed and checked against the file on open,
/// tensor bytes are read on demand, so a checkpoint is never held in memory.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>The format's own limit on the JSON header (safetensors refuses larger headers).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const int MaxRank = 8;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly unsafe byte* _data;
    private readonly Dictionary<string, SafetensorsTensor> _tensors;

    private unsafe SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, long dataStart, Dictionary<string, SafetensorsTensor> tensors)
    {
        Path = path;
        _map = map;
        _view = view;
        _tensors = tensors;
        if (view is not null)
        {
            byte* basePointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
            _data = basePointer + view.PointerOffset + dataStart;
        }
    }

    public string Path { get; }

    public IReadOnlyDictionary<string, SafetensorsTensor> Tensors => _tensors;

    /// <summary>Opens and validates <paramref name="path"/>; throws <see cref="PaliGemmaException"/> naming the file.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path))
        {
            throw PaliGemmaException.InFile(path, "file not found");
        }

        long fileLength;
        long headerLength;
        byte[] header;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
            fileLength = stream.Length;
            if (fileLength < 8)
            {
                throw PaliGemmaException.InFile(path, $"not a safetensors file: {fileLength} bytes, shorter than the 8-byte header length");
            }

            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            ulong declared = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (declared > MaxHeaderBytes)
            {
                throw PaliGemmaException.InFile(path, $"safetensors header claims {declared} bytes, above the format's limit of {MaxHeaderBytes}");
            }

            headerLength = (long)declared;
            if (8 + headerLength > fileLength)
            {
                throw PaliGemmaException.InFile(path, $"truncated: the safetensors header claims {headerLength} bytes but the file has {fileLength - 8} after the length");
            }

            header = new byte[headerLength];
            stream.ReadExactly(header);
        }
        catch (IOException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot read: {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot read: {e.Message}", e);
        }

        long dataStart = 8 + headerLength;
        long dataLength = fileLength - dataStart;
        var tensors = ParseHeader(path, header, dataLength);

        if (dataLength == 0)
        {
            return new SafetensorsFile(path, null, null, dataStart, tensors);
        }

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, fileLength, MemoryMappedFileAccess.Read);
        return new SafetensorsFile(path, map, view, dataStart, tensors);
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes of a tensor starting at <paramref name="byteOffset"/>.</summary>
    public unsafe void ReadBytes(SafetensorsTensor tensor, long byteOffset, Span<byte> destination)
    {
        if (byteOffset < 0 || byteOffset + destination.Length > tensor.ByteCount)
        {
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"{tensor.Name}: bytes {byteOffset}..{byteOffset + destination.Length} out of {tensor.ByteCount}");
        }

        // After Dispose the view is unmapped: reading through _data would be a segfault, not an exception.
        ObjectDisposedException.ThrowIf(_disposed, this);
        byte* source = _data + tensor.DataOffset + byteOffset;
        new ReadOnlySpan<byte>(source, destination.Length).CopyTo(destination);
        Native.PageCache.Release(source, destination.Length);
    }

    private static Dictionary<string, SafetensorsTensor> ParseHeader(string path, byte[] header, long dataLength)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw PaliGemmaException.InFile(path, $"safetensors header is not valid JSON: {TensorNames.ForMessage(e.Message)}", e);
        }

        using (document)
        {
            try
            {
                return ParseTensors(path, document.RootElement, dataLength);
            }
            catch (InvalidOperationException e)
            {
                // JsonDocument accepts escapes such as "\udc00" that are not UTF-16; reading such a
                // name or dtype as a string throws this.
                throw PaliGemmaException.InFile(path, $"safetensors header holds an unreadable value: {e.Message}", e);
            }
        }
    }

    private static Dictionary<string, SafetensorsTensor> ParseTensors(string path, JsonElement root, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw PaliGemmaException.InFile(path, "safetensors header is not a JSON object");
        }

        var tensors = new Dictionary<string, SafetensorsTensor>(StringComparer.Ordinal);
        foreach (var property in root.EnumerateObject())
        {
            if (property.Name == "__metadata__")
            {
                continue;
            }

            var tensor = ParseTensor(path, property.Name, property.Value, dataLength);
            if (!tensors.TryAdd(tensor.Name, tensor))
            {
                throw PaliGemmaException.InFile(path, $"tensor '{TensorNames.ForMessage(tensor.Name)}' is declared twice");
            }
        }

        CheckNoOverlap(path, tensors.Values);
        return tensors;
    }

    private static SafetensorsTensor ParseTensor(string path, string name, JsonElement entry, long dataLength)
    {
        string Problem(string what) => $"tensor '{TensorNames.ForMessage(name)}': {what}";

        if (entry.ValueKind != JsonValueKind.Object
            || !entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String
            || !entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array
            || !entry.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array)
        {
            throw PaliGemmaException.InFile(path, Problem("entry needs \"dtype\" (string), \"shape\" and \"data_offsets\" (arrays)"));
        }

        string dtypeName = dtypeElement.GetString()!;
        if (!TensorDTypes.TryParse(dtypeName, out var dtype))
        {
            throw PaliGemmaException.InFile(path, Problem($"unsupported dtype '{TensorNames.ForMessage(dtypeName)}'"));
        }

        int rank = shapeElement.GetArrayLength();
        if (rank > MaxRank)
        {
            throw PaliGemmaException.InFile(path, Problem($"rank {rank} exceeds {MaxRank}"));
        }

        var shape = new long[rank];
        long elements = 1;
        int i = 0;
        foreach (var dimension in shapeElement.EnumerateArray())
        {
            if (dimension.ValueKind != JsonValueKind.Number || !dimension.TryGetInt64(out long size) || size < 0)
            {
                throw PaliGemmaException.InFile(path, Problem("shape must hold non-negative integers"));
            }

            shape[i++] = size;
            try
            {
                elements = checked(elements * size);
            }
            catch (OverflowException)
            {
                throw PaliGemmaException.InFile(path, Problem($"shape [{string.Join(", ", shapeElement.EnumerateArray())}] overflows"));
            }
        }

        if (offsetsElement.GetArrayLength() != 2)
        {
            throw PaliGemmaException.InFile(path, Problem("data_offsets must be [begin, end]"));
        }

        var begin = offsetsElement[0];
        var end = offsetsElement[1];
        // TryGetInt64 throws rather than answers false on a non-number, so the kind is checked first.
        if (begin.ValueKind != JsonValueKind.Number || end.ValueKind != JsonValueKind.Number
            || !begin.TryGetInt64(out long start) || !end.TryGetInt64(out long stop) || start < 0 || stop < start)
        {
            throw PaliGemmaException.InFile(path, Problem("data_offsets must be non-negative integers with begin <= end"));
        }

        if (stop > dataLength)
        {
            throw PaliGemmaException.InFile(path, Problem($"data ends at byte {stop} but the file's data section has {dataLength} bytes (truncated file?)"));
        }

        long expected;
        try
        {
            expected = checked(elements * dtype.ElementSize());
        }
        catch (OverflowException)
        {
            throw PaliGemmaException.InFile(path, Problem("byte count overflows"));
        }

        if (stop - start != expected)
        {
            throw PaliGemmaException.InFile(path, Problem($"shape [{string.Join(", ", shape)}] of {dtypeName} needs {expected} bytes but data_offsets span {stop - start}"));
        }

        return new SafetensorsTensor(name, dtype, shape, start, expected);
    }

    private static void CheckNoOverlap(string path, IEnumerable<SafetensorsTensor> tensors)
    {
        SafetensorsTensor? previous = null;
        foreach (var tensor in tensors.Where(t => t.ByteCount > 0).OrderBy(t => t.DataOffset))
        {
            if (previous is not null && tensor.DataOffset < previous.DataOffset + previous.ByteCount)
            {
                throw PaliGemmaException.InFile(path, $"tensors '{TensorNames.ForMessage(previous.Name)}' and '{TensorNames.ForMessage(tensor.Name)}' overlap in the data section");
            }

            previous = tensor;
        }
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }

        _map?.Dispose();
    }
}
