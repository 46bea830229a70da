using CsCheck;
using PaliGemma.Gguf.Tokenizer;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>Broken tokenizer files: the SentencePiece protobuf, tokenizer.json and tokenizer_config.json.</summary>
public sealed class TokenizerFuzzTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Lazy<SentencePieceMutation> Model = new(() => new SentencePieceMutation(File.ReadAllBytes(Path.Combine(Fuzz.GoldenCheckpoint, "tokenizer.model"))));

    private static readonly Lazy<(string FileName, byte[] Original, JsonMutation Mutation)[]> JsonTargets = new(() =>
    {
        string[] values =
        [
            "\"BPE\"", "\"Unigram\"", "\"WordPiece\"", "\"<unk>\"", "\"<image>\"", "\"\\n\"", "\"<0x0A>\"",
            "2151", "2152", "2153", "15999999", "16000000", "16000001", "2147483647",
            "{\"id\":2152,\"content\":\"<image>\",\"special\":true}",
            "{\"id\":15999999,\"content\":\"<far>\",\"special\":true}",
            "{\"id\":16000001,\"content\":\"<too far>\",\"special\":true}",
            "{\"id\":-1,\"content\":\"<neg>\",\"special\":true}",
            "{\"id\":\"3\",\"content\":7,\"special\":\"yes\"}",
            "{\"15999999\":{\"content\":\"<far>\"},\"2152\":{\"content\":\"<image>\"}}",
            "{\"-5\":{\"content\":\"x\"},\"99999999999\":{\"content\":\"y\"},\"7\":{\"content\":null}}",
            "[\"a\",\"b\"]", "[\"a b\"]", "[[\"a\",\"b\"],[\"\\u2581\",\"t\"]]", "[[1,2]]", "[[null,\"x\"]]",
            "{\"a\":15999999}", "{\"a\":0,\"b\":0}", "{}",
        ];
        string[] keys = ["added_tokens", "added_tokens_decoder", "model", "vocab", "merges", "type", "unk_token", "id", "content", "special", "<image>", "<bos>", "<eos>", "<pad>"];
        return new[] { "tokenizer.json", "tokenizer_config.json" }.Select(name =>
        {
            byte[] original = File.ReadAllBytes(Path.Combine(Fuzz.GoldenCheckpoint, name));
            return (name, original, new JsonMutation(original, values, keys));
        }).ToArray();
    });

    private readonly ScratchFolder _scratch = new("tokenizer");

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Mutated_sentencepiece_models_load_or_are_refused_with_a_PaliGemmaException_naming_the_file()
    {
        var model = Model.Value;
        model.Edits.Sample(
            edits =>
            {
                string path = _scratch.NewFile(".model");
                File.WriteAllBytes(path, model.Apply(edits));
                try
                {
                    return Fuzz.Expect(path, () => SentencePieceModel.Load(path));
                }
                finally
                {
                    ScratchFolder.TryDelete(path);
                }
            },
            output.WriteLine,
            iter: Fuzz.Iterations(1000));
    }

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Mutated_tokenizer_json_and_tokenizer_config_load_or_are_refused_with_a_PaliGemmaException_naming_the_file()
    {
        var targets = JsonTargets.Value;
        var gen = Gen.Select(Gen.Int[0, targets.Length - 1], Gen.Bool)
            .SelectMany((target, withModel) => targets[target].Mutation.Edits.Select(edits => (target, withModel, edits)));
        gen.Sample(
            (target, withModel, edits) =>
            {
                string directory = _scratch.ThreadFolder;
                if (!File.Exists(Path.Combine(directory, "tokenizer.json")))
                {
                    ScratchFolder.CopyFiles(Fuzz.GoldenCheckpoint, directory);
                }

                foreach (var (fileName, original, _) in targets)
                {
                    File.WriteAllBytes(Path.Combine(directory, fileName), original);
                }

                // Without tokenizer.model the vocabulary comes from tokenizer.json alone: another parser.
                string modelPath = Path.Combine(directory, "tokenizer.model");
                if (withModel)
                {
                    File.WriteAllBytes(modelPath, Model.Value.Original);
                }
                else
                {
                    File.Delete(modelPath);
                }

                File.WriteAllBytes(Path.Combine(directory, targets[target].FileName), targets[target].Mutation.Apply(edits));
                string label = $"{targets[target].FileName}{(withModel ? " + model" : "")}";
                return label + " " + Fuzz.Expect(directory, () => TokenizerLoader.Load(directory));
            },
            output.WriteLine,
            iter: Fuzz.Iterations(500),
            print: t => $"{targets[t.Item1].FileName} {(t.Item2 ? "with" : "without")} tokenizer.model: {t.Item3}");
    }

    public void Dispose() => _scratch.Dispose();
}

/// <summary>
/// Breaks a protobuf the way a hostile file would: varints (tags, length prefixes, values) replaced,
/// some set to lengths far past the end, plus blind byte edits. The varints are found by walking the
/// wire format two levels deep (ModelProto, then each piece and spec).
/// </summary>
internal sealed class SentencePieceMutation
{
    private readonly List<(int Offset, int Size, ulong Value)> _varints = [];

    public SentencePieceMutation(byte[] original)
    {
        Original = original;
        Walk(0, original.Length, depth: 0);
        var edgeValues = Gen.OneOfConst(0UL, 1UL, 2UL, 5UL, 127UL, 128UL, 0x7FFF_FFFFUL, 0x8000_0000UL, 0xFFFF_FFFFUL, 1UL << 32, 1UL << 62, 1UL << 63, ulong.MaxValue);
        var tags = Gen.Select(Gen.Int[0, 60], Gen.Int[0, 7], (field, wire) => (ulong)((field << 3) | wire));
        var absolute = Gen.OneOf(edgeValues, tags, Gen.ULong).Select(v => (v, false));
        var relative = Gen.Long[-3, 3].Select(d => (unchecked((ulong)d), true));
        var varint = Gen.Select(Gen.UInt[0, uint.MaxValue], Gen.Frequency((3, absolute), (1, relative)), (which, v) => new VarintEdit(which, v.Item1, v.Item2));
        Edits = Gen.Frequency(
            (5, varint.Array[1, 3].Select(v => new Case(v, []))),
            (4, ByteEdit.Any.Array[1, 3].Select(b => new Case([], b))),
            (1, Gen.Select(varint.Array[1, 2], ByteEdit.Any.Array[1, 2], (v, b) => new Case(v, b))));
    }

    public byte[] Original { get; }

    public Gen<Case> Edits { get; }

    public byte[] Apply(Case edits)
    {
        byte[] bytes = Original;

        // From the last offset back, so that a re-encoded varint of another size moves nothing still to edit.
        foreach (var edit in edits.Varints.OrderByDescending(v => v.Which))
        {
            var (offset, size, value) = _varints[(int)((ulong)edit.Which * (ulong)_varints.Count >> 32)];
            ulong replacement = edit.Relative ? unchecked(value + edit.Value) : edit.Value;
            bytes = [.. bytes.AsSpan(0, offset), .. Encode(replacement), .. bytes.AsSpan(offset + size)];
        }

        foreach (var edit in edits.Bytes)
        {
            bytes = edit.Apply(bytes, 0, bytes.Length);
        }

        return bytes;
    }

    private void Walk(int position, int end, int depth)
    {
        while (position < end)
        {
            ulong tag = ReadVarint(ref position);
            int field = (int)(tag >> 3);
            switch (tag & 7)
            {
                case 0:
                    ReadVarint(ref position);
                    break;
                case 1:
                    position += 8;
                    break;
                case 5:
                    position += 4;
                    break;
                case 2:
                    int length = (int)ReadVarint(ref position);
                    if (depth == 0 && field is 1 or 2 or 3)
                    {
                        Walk(position, position + length, depth + 1);
                    }

                    position += length;
                    break;
                default:
                    throw new InvalidDataException($"golden tokenizer.model: wire type {tag & 7} at {position}");
            }
        }
    }

    private ulong ReadVarint(ref int position)
    {
        int start = position;
        ulong value = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = Original[position++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                break;
            }
        }

        _varints.Add((start, position - start, value));
        return value;
    }

    private static byte[] Encode(ulong value)
    {
        var bytes = new List<byte>(10);
        do
        {
            byte b = (byte)(value & 0x7F);
            value >>= 7;
            bytes.Add(value == 0 ? b : (byte)(b | 0x80));
        }
        while (value != 0);
        return [.. bytes];
    }

    /// <summary>Varint number <see cref="Which"/> (a fraction of 2^32 of them all) set to, or moved by, <see cref="Value"/>.</summary>
    internal sealed record VarintEdit(uint Which, ulong Value, bool Relative);

    internal sealed record Case(VarintEdit[] Varints, ByteEdit[] Bytes)
    {
        public override string ToString() => $"varints [{string.Join(", ", Varints.AsEnumerable())}] bytes [{string.Join(", ", Bytes.AsEnumerable())}]";
    }
}
