using CsCheck;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>A valid JSON file and the ways one case breaks it: structural edits, then blind byte edits.</summary>
internal sealed class JsonMutation
{
    private readonly byte[] _original;
    private readonly JsonTree _tree;
    private readonly List<int[]> _paths;

    public JsonMutation(byte[] original, IReadOnlyList<string> domainValues, IReadOnlyList<string> domainKeys)
    {
        _original = original;
        _tree = JsonTree.Parse(original);
        _paths = _tree.Paths();
        // Mostly one kind of damage at a time: a blind byte flip on top of a JSON edit usually
        // just makes the JSON invalid, hiding the edit.
        var json = JsonEdit.For(domainValues, domainKeys).Array[1, 4];
        var bytes = ByteEdit.Any.Array[1, 3];
        Edits = Gen.Frequency(
            (6, json.Select(j => new Case(j, []))),
            (3, bytes.Select(b => new Case([], b))),
            (1, Gen.Select(json, bytes, (j, b) => new Case(j, b))));
    }

    public Gen<Case> Edits { get; }

    public byte[] Apply(Case edits)
    {
        byte[] bytes = _original;
        if (edits.Json.Length > 0)
        {
            var tree = _tree;
            foreach (var edit in edits.Json)
            {
                tree = edit.Apply(tree, _paths);
            }

            bytes = tree.ToUtf8();
        }

        foreach (var edit in edits.Bytes)
        {
            bytes = edit.Apply(bytes, 0, bytes.Length);
        }

        return bytes;
    }

    internal sealed record Case(JsonEdit[] Json, ByteEdit[] Bytes)
    {
        public override string ToString() => $"json [{string.Join(", ", Json.AsEnumerable())}] bytes [{string.Join(", ", Bytes.AsEnumerable())}]";
    }
}
