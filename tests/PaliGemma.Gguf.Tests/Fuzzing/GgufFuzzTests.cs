using System.Buffers.Binary;
using System.Text;
using CsCheck;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// Broken copies of the two GGUF files the converter writes for the golden checkpoint: counts,
/// lengths, type tags, dimensions and offsets of the header rewritten, plus blind edits and truncation.
/// </summary>
public sealed class GgufFuzzTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Lazy<GgufMutation[]> Files = new(Convert);

    private readonly ScratchFolder _scratch = new("gguf");

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Mutated_gguf_files_open_or_are_refused_with_a_PaliGemmaException_naming_the_file()
    {
        var files = Files.Value;
        var gen = Gen.Int[0, files.Length - 1].SelectMany(f => files[f].Edits.Select(edits => (f, edits)));
        gen.Sample(
            (file, edits) =>
            {
                string path = _scratch.NewFile(".gguf");
                File.WriteAllBytes(path, files[file].Apply(edits));
                try
                {
                    return Fuzz.Expect(path, () => OpenAndReadEverything(path));
                }
                finally
                {
                    ScratchFolder.TryDelete(path);
                }
            },
            output.WriteLine,
            iter: Fuzz.Iterations(600),
            print: t => $"{files[t.Item1].Name}: {t.Item2}");
    }

    /// <summary>What inspect and the model loader do with a GGUF: every metadata value, then every tensor's bytes.</summary>
    private static void OpenAndReadEverything(string path)
    {
        var gguf = GgufFile.Open(path);
        _ = gguf.Architecture;
        foreach (var (key, value) in gguf.MetadataList)
        {
            _ = value.ToString();
            _ = gguf.GetString(key);
            _ = gguf.GetInteger(key);
            _ = gguf.GetFloat(key);
        }

        Span<byte> buffer = stackalloc byte[64];
        foreach (var tensor in gguf.Tensors)
        {
            _ = gguf.FindTensor(tensor.Name);
            _ = tensor.DimensionsText;
            int length = (int)Math.Min(tensor.ByteCount, buffer.Length);
            gguf.ReadTensorBytes(tensor, 0, buffer[..length]);
            gguf.ReadTensorBytes(tensor, tensor.ByteCount - length, buffer[..length]);
        }
    }

    private static GgufMutation[] Convert()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"paligemma-fuzz-gguf-golden-{Guid.NewGuid():N}");
        try
        {
            var result = CheckpointConverter.Convert(Fuzz.GoldenCheckpoint, new ConversionOptions { OutputDirectory = folder, TextType = OutputType.F32, MmprojType = OutputType.F32 });
            return [new GgufMutation("text model", File.ReadAllBytes(result.TextModelPath)), new GgufMutation("mmproj", File.ReadAllBytes(result.MmprojPath))];
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    public void Dispose() => _scratch.Dispose();
}

/// <summary>
/// A valid GGUF file mapped field by field (the test's own reading of the format, independent of
/// <see cref="GgufFile"/>), and the ways one case breaks it.
/// </summary>
internal sealed class GgufMutation
{
    private readonly byte[] _original;
    private readonly Dictionary<string, List<(int Offset, int Width, ulong Value)>> _fields = [];
    private readonly string[] _kinds;
    private readonly int _headerEnd;

    public GgufMutation(string name, byte[] original)
    {
        Name = name;
        _original = original;
        _headerEnd = Map();
        _kinds = [.. _fields.Keys.Order(StringComparer.Ordinal)];

        var edges = Gen.OneOfConst<ulong>(
            0UL, 1UL, 2UL, 3UL, 4UL, 5UL, 7UL, 8UL, 9UL, 12UL, 13UL, 16UL, 29UL, 30UL, 31UL, 32UL, 33UL, 39UL, 40UL, 64UL, 255UL, 256UL,
            (1UL << 20) - 1, 1UL << 20, (1UL << 20) + 1, 64UL << 20, (64UL << 20) + 1,
            0x7FFF_FFFFUL, 0x8000_0000UL, 0xFFFF_FFFFUL, 1UL << 32, 1UL << 40, 1UL << 61, 1UL << 62, (ulong)long.MaxValue, 1UL << 63, ulong.MaxValue - 31, ulong.MaxValue,
            (ulong)original.Length, (ulong)original.Length + 1, (ulong)original.Length - 1, (ulong)original.Length / 4);
        var absolute = Gen.OneOf(edges, Gen.ULong, Gen.ULong[0, 300]).Select(v => (v, false));
        var relative = Gen.OneOf(Gen.Long[-40, 40], Gen.OneOfConst(-32L, 32L, 64L, 256L, 4096L)).Select(d => (unchecked((ulong)d), true));
        var field = Gen.Select(
            Gen.Int[0, _kinds.Length - 1],
            Gen.UInt[0, uint.MaxValue],
            Gen.Frequency((3, absolute), (1, relative)),
            (kind, which, v) => new FieldEdit(_kinds[kind], which, v.Item1, v.Item2));
        Edits = Gen.Frequency(
            (6, field.Array[1, 3].Select(f => new Case(f, []))),
            (3, ByteEdit.Any.Array[1, 3].Select(b => new Case([], b))),
            (1, Gen.Select(field.Array[1, 2], ByteEdit.Any.Array[1, 2], (f, b) => new Case(f, b))));
    }

    public string Name { get; }

    public Gen<Case> Edits { get; }

    public byte[] Apply(Case edits)
    {
        var bytes = (byte[])_original.Clone();
        foreach (var edit in edits.Fields)
        {
            var fields = _fields[edit.Kind];
            var (offset, width, value) = fields[(int)((ulong)edit.Which * (ulong)fields.Count >> 32)];
            ulong replacement = edit.Relative ? unchecked(value + edit.Value) : edit.Value;
            if (width == 4)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), unchecked((uint)replacement));
            }
            else
            {
                BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(offset), replacement);
            }
        }

        // Blind edits land in the header (metadata and tensor table), except those that say anywhere.
        foreach (var edit in edits.Bytes)
        {
            bytes = edit.Apply(bytes, 0, _headerEnd);
        }

        return bytes;
    }

    /// <summary>Records every count, length, tag and offset of the header; returns where the tensor table ends.</summary>
    private int Map()
    {
        int position = 0;
        ulong Read(string kind, int width)
        {
            ulong value = width == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(_original.AsSpan(position)) : BinaryPrimitives.ReadUInt64LittleEndian(_original.AsSpan(position));
            if (!_fields.TryGetValue(kind, out var list))
            {
                _fields[kind] = list = [];
            }

            list.Add((position, width, value));
            position += width;
            return value;
        }

        string ReadString(string kind)
        {
            int length = (int)Read(kind, 8);
            position += length;
            return Encoding.UTF8.GetString(_original, position - length, length);
        }

        void Skip(uint type, string kind)
        {
            switch (type)
            {
                case 0 or 1 or 7: position += 1; break;
                case 2 or 3: position += 2; break;
                case 4 or 5 or 6: Read(kind, 4); break;
                case 8: ReadString("string length"); break;
                case 10 or 11 or 12: Read(kind, 8); break;
                default: throw new InvalidDataException($"golden GGUF: value type {type} at {position}");
            }
        }

        Read("magic", 4);
        Read("version", 4);
        ulong tensorCount = Read("tensor count", 8);
        ulong metadataCount = Read("metadata count", 8);
        for (ulong i = 0; i < metadataCount; i++)
        {
            ReadString("key length");
            uint type = (uint)Read("value type", 4);
            if (type == 9)
            {
                uint elementType = (uint)Read("array element type", 4);
                ulong count = Read("array length", 8);
                for (ulong j = 0; j < count; j++)
                {
                    Skip(elementType, "array element");
                }
            }
            else
            {
                Skip(type, "scalar value");
            }
        }

        for (ulong i = 0; i < tensorCount; i++)
        {
            ReadString("tensor name length");
            uint dimensions = (uint)Read("tensor dimension count", 4);
            for (uint d = 0; d < dimensions; d++)
            {
                Read("tensor dimension", 8);
            }

            Read("tensor type", 4);
            Read("tensor offset", 8);
        }

        return position;
    }

    /// <summary>Field number <see cref="Which"/> (a fraction of 2^32) of a kind set to, or moved by, <see cref="Value"/>.</summary>
    internal sealed record FieldEdit(string Kind, uint Which, ulong Value, bool Relative);

    internal sealed record Case(FieldEdit[] Fields, ByteEdit[] Bytes)
    {
        public override string ToString() => $"fields [{string.Join(", ", Fields.AsEnumerable())}] bytes [{string.Join(", ", Bytes.AsEnumerable())}]";
    }
}
