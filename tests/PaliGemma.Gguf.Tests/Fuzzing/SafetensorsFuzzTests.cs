using System.Buffers.Binary;
using System.Globalization;
using CsCheck;
using PaliGemma.Gguf.Checkpoints;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>Broken copies of the golden safetensors shard: the file opens and reads, or is refused by name.</summary>
public sealed class SafetensorsFuzzTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>Tensors up to this many elements are read in full; larger ones only at both ends.</summary>
    private const long SmallTensorElements = 1 << 20;

    private static readonly Lazy<Golden> Shard = new(() => new Golden(Path.Combine(Fuzz.GoldenCheckpoint, "model-00001-of-00002.safetensors")));

    private readonly ScratchFolder _scratch = new("safetensors");

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Mutated_shards_open_or_are_refused_with_a_PaliGemmaException_naming_the_file()
    {
        var golden = Shard.Value;
        golden.Edits.Sample(
            edits =>
            {
                string path = _scratch.NewFile(".safetensors");
                File.WriteAllBytes(path, golden.Apply(edits));
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
            iter: Fuzz.Iterations(600));
    }

    /// <summary>What a converter does with a shard: open it, then read every tensor.</summary>
    private static void OpenAndReadEverything(string path)
    {
        using var file = SafetensorsFile.Open(path);
        Span<byte> head = stackalloc byte[64];
        foreach (var tensor in file.Tensors.Values)
        {
            if (!tensor.DType.IsFloatingPoint())
            {
                file.ReadBytes(tensor, 0, head[..(int)Math.Min(tensor.ByteCount, head.Length)]);
                continue;
            }

            var checkpointTensor = new CheckpointTensor(file, tensor);
            if (tensor.ElementCount <= SmallTensorElements)
            {
                checkpointTensor.ReadAll();
            }
            else if (tensor.RowCount > 0 && tensor.RowLength <= SmallTensorElements)
            {
                var row = new float[tensor.RowLength];
                checkpointTensor.ReadRows(0, row);
                checkpointTensor.ReadRows(tensor.RowCount - 1, row);
            }
        }
    }

    public void Dispose() => _scratch.Dispose();

    /// <summary>The golden shard taken apart: its header as a JSON tree, its data section as bytes.</summary>
    private sealed class Golden
    {
        private readonly byte[] _headerBytes;
        private readonly byte[] _data;
        private readonly JsonTree _header;
        private readonly List<int[]> _paths;

        public Golden(string path)
        {
            byte[] file = File.ReadAllBytes(path);
            int headerLength = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(file));
            _headerBytes = file[8..(8 + headerLength)];
            _data = file[(8 + headerLength)..];
            _header = JsonTree.Parse(_headerBytes);
            _paths = _header.Paths();

            long dataLength = _data.Length;
            string[] domainValues =
            [
                "\"F32\"", "\"F16\"", "\"BF16\"", "\"F64\"", "\"I64\"", "\"I32\"", "\"I16\"", "\"I8\"", "\"U8\"", "\"BOOL\"",
                "\"f32\"", "\"F8_E4M3\"", "\"U64\"", "\"\"",
                .. new[] { dataLength - 4, dataLength - 1, dataLength, dataLength + 1, dataLength + 4, 2 * dataLength }
                    .Select(v => v.ToString(CultureInfo.InvariantCulture)),
                $"[0,{dataLength}]", $"[{dataLength},{dataLength}]", $"[{dataLength - 4},{dataLength + 4}]", $"[0,{long.MaxValue}]",
                "[0,4]", "[4,0]", "[0,0,0]", "[0]", "[\"0\",\"4\"]", "[0.0,4.0]", "[-4,0]",
                "[1]", "[0]", "[1,1,1,1,1,1,1,1,1]", "[4294967296,4294967296]", "[3037000500,3037000500]", "[-1,-1]", "[0,9223372036854775807]",
                "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
                "{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}",
                "{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                $"{{\"dtype\":\"U8\",\"shape\":[{dataLength}],\"data_offsets\":[0,{dataLength}]}}",
            ];
            string[] domainKeys = ["dtype", "shape", "data_offsets", "__metadata__", "format", .. EntryNames(_header)];

            var lengthEdit = Gen.OneOf(
                Gen.ULong,
                Gen.OneOfConst(0UL, 1UL, 2UL, 7UL, ulong.MaxValue, 1UL << 63, (ulong)SafetensorsFile.MaxHeaderBytes, (ulong)SafetensorsFile.MaxHeaderBytes + 1),
                Gen.Long[-16, 16].Select(delta => (ulong)(headerLength + delta)),
                Gen.Int[0, 63].Select(bit => (ulong)headerLength ^ (1UL << bit)),
                Gen.Long[-16, 16].Select(delta => (ulong)(file.Length - 8 + delta)));
            // Mostly one kind of damage at a time: a blind byte flip on top of a JSON edit usually
            // just makes the JSON invalid, hiding the edit.
            var json = JsonEdit.For(domainValues, domainKeys).Array[1, 4];
            var bytes = ByteEdit.Any.Array[1, 3];
            Edits = Gen.Frequency(
                (8, json.Select(j => new Case(j, null, []))),
                (2, Gen.Select(json, lengthEdit, (j, l) => new Case(j, l, []))),
                (2, lengthEdit.Select(l => new Case([], l, []))),
                (5, bytes.Select(b => new Case([], null, b))),
                (1, Gen.Select(json, bytes, (j, b) => new Case(j, null, b))));
        }

        public Gen<Case> Edits { get; }

        public byte[] Apply(Case edits)
        {
            byte[] header = _headerBytes;
            if (edits.Json.Length > 0)
            {
                var tree = _header;
                foreach (var edit in edits.Json)
                {
                    tree = edit.Apply(tree, _paths);
                }

                header = tree.ToUtf8();
            }

            var bytes = new byte[8 + header.Length + _data.Length];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, edits.Length ?? (ulong)header.Length);
            header.CopyTo(bytes, 8);
            _data.CopyTo(bytes, 8 + header.Length);

            // Blind edits land in the length and the JSON header, except those that say anywhere.
            foreach (var edit in edits.Bytes)
            {
                bytes = edit.Apply(bytes, 0, 8 + header.Length);
            }

            return bytes;
        }

        private static IEnumerable<string> EntryNames(JsonTree header) =>
            header is JsonObjectTree o ? o.Properties.Select(p => p.Key).Take(8) : [];
    }

    private sealed record Case(JsonEdit[] Json, ulong? Length, ByteEdit[] Bytes)
    {
        public override string ToString() =>
            $"json [{string.Join(", ", Json.AsEnumerable())}] length {Length?.ToString(CultureInfo.InvariantCulture) ?? "kept"} bytes [{string.Join(", ", Bytes.AsEnumerable())}]";
    }
}
