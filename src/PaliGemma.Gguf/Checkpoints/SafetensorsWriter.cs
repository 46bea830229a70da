using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace PaliGemma.Gguf.Checkpoints;

/// <summary>
/// Writes a safetensors file in one pass: the tensors are declared first (the header holds every
/// offset), then their bytes are streamed in order. Used to derive test checkpoints and to generate
/// real-shape random checkpoints for benchmarks.
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly Stream _output;
    private readonly List<(string Name, TensorDType DType, long[] Shape, long Bytes)> _tensors = [];
    private readonly Dictionary<string, string> _metadata = new() { ["format"] = "pt" };
    private int _current;
    private long _currentWritten;
    private bool _headerWritten;

    public SafetensorsWriter(Stream output) => _output = output;

    public void AddTensor(string name, TensorDType dtype, params long[] shape)
    {
        if (_headerWritten)
        {
            throw new InvalidOperationException("the header has already been written");
        }

        long elements = shape.Aggregate(1L, (a, b) => checked(a * b));
        _tensors.Add((name, dtype, shape, checked(elements * dtype.ElementSize())));
    }

    public void WriteHeader()
    {
        using var json = new MemoryStream();
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            writer.WriteStartObject("__metadata__");
            foreach (var (key, value) in _metadata)
            {
                writer.WriteString(key, value);
            }

            writer.WriteEndObject();
            long offset = 0;
            foreach (var (name, dtype, shape, bytes) in _tensors)
            {
                writer.WriteStartObject(name);
                writer.WriteString("dtype", dtype == TensorDType.Bool ? "BOOL" : dtype.ToString());
                writer.WriteStartArray("shape");
                foreach (long dimension in shape)
                {
                    writer.WriteNumberValue(dimension);
                }

                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + bytes);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += bytes;
            }

            writer.WriteEndObject();
        }

        // Pad the header with spaces to 8 bytes, as the reference implementation does.
        int padding = (int)((8 - (json.Length % 8)) % 8);
        json.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)json.Length);
        _output.Write(length);
        json.Position = 0;
        json.CopyTo(_output);
        _headerWritten = true;
    }

    /// <summary>Appends bytes to the tensors in declaration order.</summary>
    public void WriteData(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            if (_current >= _tensors.Count)
            {
                throw new InvalidOperationException("more data than the declared tensors hold");
            }

            int take = (int)Math.Min(bytes.Length, _tensors[_current].Bytes - _currentWritten);
            _output.Write(bytes[..take]);
            bytes = bytes[take..];
            _currentWritten += take;
            while (_current < _tensors.Count && _currentWritten == _tensors[_current].Bytes)
            {
                _current++;
                _currentWritten = 0;
            }
        }
    }

    public void Dispose() => _output.Flush();
}
