using System.Text;

namespace PaliGemma.Gguf.Gguf;

/// <summary>
/// Writes a GGUF v3 file in one forward pass, as gguf.h separates it: metadata and tensor
/// descriptions first, then each tensor's bytes streamed in the declared order. The model never
/// has to be in memory.
/// </summary>
public sealed class GgufWriter : IDisposable
{
    private readonly Stream _output;
    private readonly BinaryWriter _writer;
    private readonly List<KeyValuePair<string, GgufValue>> _metadata = [];
    private readonly List<GgufTensorInfo> _tensors = [];
    private readonly uint _alignment;
    private long _nextOffset;
    private bool _headerWritten;
    private int _currentTensor;
    private long _currentTensorWritten;

    public GgufWriter(Stream output, uint alignment = GgufFormat.DefaultAlignment)
    {
        _output = output;
        _writer = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        _alignment = alignment;
    }

    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;

    /// <summary>Total bytes of tensor data, padding included: what <see cref="WriteTensorData"/> will write.</summary>
    public long DataBytes => _nextOffset;

    public void AddMetadata(string key, GgufValue value)
    {
        EnsureHeaderNotWritten();
        _metadata.Add(new(key, value));
    }

    /// <summary>Declares a tensor; its bytes are written later, in declaration order.</summary>
    public GgufTensorInfo AddTensor(string name, GgmlType type, long[] dimensions)
    {
        EnsureHeaderNotWritten();
        if (dimensions.Length is 0 or > GgufFormat.MaxDimensions)
        {
            throw new ArgumentException($"tensor '{name}' has {dimensions.Length} dimensions; GGUF allows 1..{GgufFormat.MaxDimensions}");
        }

        var info = new GgufTensorInfo(name, type, dimensions, _nextOffset);
        _nextOffset = GgufFormat.AlignUp(_nextOffset + info.ByteCount, _alignment);
        _tensors.Add(info);
        return info;
    }

    /// <summary>Writes the header, metadata and tensor table, padded to the data section.</summary>
    public void WriteHeader()
    {
        EnsureHeaderNotWritten();
        if (_alignment != GgufFormat.DefaultAlignment && !_metadata.Any(m => m.Key == GgufFormat.AlignmentKey))
        {
            _metadata.Add(new(GgufFormat.AlignmentKey, GgufValue.Of(_alignment)));
        }

        _writer.Write(GgufFormat.Magic);
        _writer.Write(GgufFormat.Version);
        _writer.Write((ulong)_tensors.Count);
        _writer.Write((ulong)_metadata.Count);
        foreach (var (key, value) in _metadata)
        {
            WriteString(key);
            _writer.Write((uint)value.Type);
            WriteValue(value);
        }

        foreach (var tensor in _tensors)
        {
            WriteString(tensor.Name);
            _writer.Write((uint)tensor.Dimensions.Length);
            foreach (long dimension in tensor.Dimensions)
            {
                _writer.Write((ulong)dimension);
            }

            _writer.Write((uint)tensor.Type);
            _writer.Write((ulong)tensor.Offset);
        }

        _writer.Flush();
        WritePadding();
        _headerWritten = true;
        AdvancePastEmptyTensors();
    }

    /// <summary>Appends bytes of the current tensor; moves to the next tensor when one is complete.</summary>
    public void WriteTensorData(ReadOnlySpan<byte> bytes)
    {
        if (!_headerWritten)
        {
            throw new InvalidOperationException("WriteHeader must come before tensor data");
        }

        while (!bytes.IsEmpty)
        {
            if (_currentTensor >= _tensors.Count)
            {
                throw new InvalidOperationException("more tensor data than the declared tensors hold");
            }

            var tensor = _tensors[_currentTensor];
            int take = (int)Math.Min(bytes.Length, tensor.ByteCount - _currentTensorWritten);
            _output.Write(bytes[..take]);
            bytes = bytes[take..];
            _currentTensorWritten += take;
            AdvancePastEmptyTensors();
        }
    }

    /// <summary>Checks every declared tensor got all its bytes and flushes.</summary>
    public void Finish()
    {
        if (!_headerWritten || _currentTensor != _tensors.Count)
        {
            string which = _currentTensor < _tensors.Count ? _tensors[_currentTensor].Name : "(header)";
            throw new InvalidOperationException($"GGUF incomplete: tensor '{which}' has not been written in full");
        }

        _output.Flush();
    }

    private void AdvancePastEmptyTensors()
    {
        while (_currentTensor < _tensors.Count && _currentTensorWritten == _tensors[_currentTensor].ByteCount)
        {
            WritePadding();
            _currentTensor++;
            _currentTensorWritten = 0;
        }
    }

    private void WritePadding()
    {
        long position = _output.Position;
        int padding = (int)(GgufFormat.AlignUp(position, _alignment) - position);
        Span<byte> zeros = stackalloc byte[padding];
        zeros.Clear();
        _output.Write(zeros);
    }

    private void WriteString(string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        _writer.Write((ulong)bytes.Length);
        _writer.Write(bytes);
    }

    private void WriteValue(GgufValue value)
    {
        if (value.Type == GgufValueType.Array)
        {
            var array = (Array)value.Value;
            _writer.Write((uint)value.ElementType);
            _writer.Write((ulong)array.Length);
            foreach (object element in array)
            {
                WriteScalar(value.ElementType, element);
            }
        }
        else
        {
            WriteScalar(value.Type, value.Value);
        }
    }

    private void WriteScalar(GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: _writer.Write(Convert.ToByte(value)); break;
            case GgufValueType.Int8: _writer.Write(Convert.ToSByte(value)); break;
            case GgufValueType.UInt16: _writer.Write(Convert.ToUInt16(value)); break;
            case GgufValueType.Int16: _writer.Write(Convert.ToInt16(value)); break;
            case GgufValueType.UInt32: _writer.Write(Convert.ToUInt32(value)); break;
            case GgufValueType.Int32: _writer.Write(Convert.ToInt32(value)); break;
            case GgufValueType.Float32: _writer.Write(Convert.ToSingle(value)); break;
            case GgufValueType.Bool: _writer.Write((byte)((bool)value ? 1 : 0)); break;
            case GgufValueType.String: WriteString((string)value); break;
            case GgufValueType.UInt64: _writer.Write(Convert.ToUInt64(value)); break;
            case GgufValueType.Int64: _writer.Write(Convert.ToInt64(value)); break;
            case GgufValueType.Float64: _writer.Write(Convert.ToDouble(value)); break;
            default: throw new ArgumentException($"cannot write a GGUF value of type {type}");
        }
    }

    private void EnsureHeaderNotWritten()
    {
        if (_headerWritten)
        {
            throw new InvalidOperationException("the GGUF header has already been written");
        }
    }

    public void Dispose() => _writer.Dispose();
}
