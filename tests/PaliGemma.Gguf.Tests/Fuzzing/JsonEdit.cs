using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using CsCheck;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// A JSON document as a tree that, unlike JsonNode, can hold what hostile files hold: duplicate keys,
/// numbers no .NET type represents (1e400, 2^64) and arbitrary nesting. Values other than objects
/// and arrays are kept as their raw text. Edits copy only the path they change.
/// </summary>
internal abstract record JsonTree
{
    private static readonly JsonSerializerOptions KeyOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static JsonTree Parse(byte[] utf8)
    {
        using var document = JsonDocument.Parse(utf8, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        return From(document.RootElement);
    }

    public byte[] ToUtf8()
    {
        var text = new StringBuilder();
        Write(text);
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    public abstract void Write(StringBuilder text);

    /// <summary>Every node's path from the root (child indices), the root's included.</summary>
    public List<int[]> Paths()
    {
        var paths = new List<int[]>();
        void Walk(JsonTree node, int[] path)
        {
            paths.Add(path);
            int i = 0;
            foreach (var child in node.Children)
            {
                Walk(child, [.. path, i++]);
            }
        }

        Walk(this, []);
        return paths;
    }

    public abstract IEnumerable<JsonTree> Children { get; }

    protected static void WriteKey(StringBuilder text, string key) => text.Append(JsonSerializer.Serialize(key, KeyOptions)).Append(':');

    private static JsonTree From(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => new JsonObjectTree(e.EnumerateObject().Select(p => (p.Name, From(p.Value))).ToArray()),
        JsonValueKind.Array => new JsonArrayTree(e.EnumerateArray().Select(From).ToArray()),
        _ => new JsonRaw(e.GetRawText()),
    };
}

internal sealed record JsonRaw(string Text) : JsonTree
{
    public override IEnumerable<JsonTree> Children => [];

    public override void Write(StringBuilder text) => text.Append(Text);
}

internal sealed record JsonArrayTree(JsonTree[] Items) : JsonTree
{
    public override IEnumerable<JsonTree> Children => Items;

    public override void Write(StringBuilder text)
    {
        text.Append('[');
        for (int i = 0; i < Items.Length; i++)
        {
            if (i > 0)
            {
                text.Append(',');
            }

            Items[i].Write(text);
        }

        text.Append(']');
    }
}

internal sealed record JsonObjectTree((string Key, JsonTree Value)[] Properties) : JsonTree
{
    public override IEnumerable<JsonTree> Children => Properties.Select(p => p.Value);

    public override void Write(StringBuilder text)
    {
        text.Append('{');
        for (int i = 0; i < Properties.Length; i++)
        {
            if (i > 0)
            {
                text.Append(',');
            }

            WriteKey(text, Properties[i].Key);
            Properties[i].Value.Write(text);
        }

        text.Append('}');
    }
}

/// <summary>
/// A structural edit of a JSON document at a node picked by its index among the document's paths
/// (a fraction of 2^32, so it shrinks). An edit whose node an earlier edit removed does nothing.
/// </summary>
internal abstract record JsonEdit(uint Node)
{
    /// <summary>A uniform fraction of 2^32 (Gen.UInt32 favours small numbers, which would pile the edits at the start).</summary>
    private static readonly Gen<uint> Position = Gen.UInt[0, uint.MaxValue];

    /// <summary>Edits of a document with these <paramref name="paths"/>; <paramref name="domainValues"/> are raw JSON texts that mean something to this file (dtype names, ids, sizes).</summary>
    public static Gen<JsonEdit> For(IReadOnlyList<string> domainValues, IReadOnlyList<string> domainKeys)
    {
        var value = Values(domainValues);
        var key = Gen.OneOf(Gen.OneOfConst(domainKeys.ToArray()), Gen.OneOfConst("", "__metadata__", "\u0000", "a\"b", "é", "line\nbreak", "\r"), Gen.String[0, 8]);
        return Gen.Frequency<JsonEdit>(
            (6, Gen.Select(Position, value, (n, v) => (JsonEdit)new ReplaceValue(n, v))),
            (2, Position.Select(n => (JsonEdit)new RemoveNode(n))),
            (2, Gen.Select(Position, value, (n, v) => (JsonEdit)new DuplicateKey(n, v))),
            (1, Gen.Select(Position, Gen.OneOf(Gen.Int[1, 20], Gen.Int[20, 2000]), Gen.Bool, (n, d, o) => (JsonEdit)new Nest(n, d, o))),
            (1, Gen.Select(Position, key, (n, k) => (JsonEdit)new RenameKey(n, k))),
            (2, Gen.Select(Position, key, value, (n, k, v) => (JsonEdit)new AddProperty(n, k, v))));
    }

    /// <summary>Raw JSON values: type changes, the edges of every integer type, numbers no type holds, odd strings.</summary>
    public static Gen<string> Values(IReadOnlyList<string> domainValues)
    {
        var edges = Gen.OneOfConst(
            "null", "true", "false", "0", "-0", "-0.0", "1", "-1", "2", "1.5", "-1.5", "1e3", "1E+2",
            "127", "128", "255", "256", "32767", "65535", "65536",
            "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
            "16000000", "16000001", "100000000", "100000001",
            "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
            "18446744073709551615", "18446744073709551616", "1e19", "1e308", "-1e308", "1e400", "-1e400", "1e-400",
            "123456789012345678901234567890",
            "\"\"", "\"0\"", "\"123\"", "\"-1\"", "\"x\"", "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00x\"", "\"\\uFFFF\"", "\"é\"", "\"a\\nb\"",
            "[]", "{}", "[0]", "[-1]", "[1,2,3]", "[null]", "[\"x\"]", "[[]]", "[{}]", "{\"a\":1}", "{\"\":null}",
            "[9223372036854775807,9223372036854775807]", "[4294967296,4294967296]", "[0,0]", "[1,0]", "[-1,-1]");
        var shapes = Gen.OneOf(Gen.Long, Gen.Long[-2, 70000], Gen.OneOfConst(0L, 1L, long.MaxValue, long.MinValue, 1L << 31, 1L << 32, 1L << 62))
            .Array[0, 9].Select(a => "[" + string.Join(",", a) + "]");
        var numbers = Gen.OneOf(
            Gen.Long.Select(v => v.ToString(CultureInfo.InvariantCulture)),
            Gen.Int[-3, 3000].Select(v => v.ToString(CultureInfo.InvariantCulture)),
            Gen.Double.Select(v => double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : "1e999"));
        var strings = Gen.String[0, 12].Select(s => JsonSerializer.Serialize(s));
        var gens = new List<(int, IGen<string>)> { (5, edges), (2, shapes), (3, numbers), (1, strings) };
        if (domainValues.Count > 0)
        {
            gens.Add((5, Gen.OneOfConst(domainValues.ToArray())));
        }

        return Gen.Frequency(gens.ToArray());
    }

    public JsonTree Apply(JsonTree root, List<int[]> paths)
    {
        int[] path = paths[(int)((ulong)Node * (ulong)paths.Count >> 32)];
        return path.Length == 0 ? ApplyToRoot(root) : Edit(root, path, 0);
    }

    /// <summary>Edits <paramref name="parent"/>'s child number <paramref name="index"/>; null leaves it.</summary>
    protected abstract JsonTree? ApplyToChild(JsonTree parent, int index);

    protected virtual JsonTree ApplyToRoot(JsonTree root) => root;

    private JsonTree Edit(JsonTree node, int[] path, int depth)
    {
        int index = path[depth];
        if (depth == path.Length - 1)
        {
            return ApplyToChild(node, index) ?? node;
        }

        return node switch
        {
            JsonObjectTree o when index < o.Properties.Length => new JsonObjectTree(With(o.Properties, index, (o.Properties[index].Key, Edit(o.Properties[index].Value, path, depth + 1)))),
            JsonArrayTree a when index < a.Items.Length => new JsonArrayTree(With(a.Items, index, Edit(a.Items[index], path, depth + 1))),
            _ => node,
        };
    }

    protected static T[] With<T>(T[] items, int index, T item)
    {
        var copy = (T[])items.Clone();
        copy[index] = item;
        return copy;
    }

    protected static T[] Without<T>(T[] items, int index) => [.. items.AsSpan(0, index), .. items.AsSpan(index + 1)];

    protected static T[] Inserted<T>(T[] items, int index, T item) => [.. items.AsSpan(0, index), item, .. items.AsSpan(index)];
}

internal sealed record ReplaceValue(uint Node, string Raw) : JsonEdit(Node)
{
    protected override JsonTree? ApplyToChild(JsonTree parent, int index) => parent switch
    {
        JsonObjectTree o when index < o.Properties.Length => new JsonObjectTree(With(o.Properties, index, (o.Properties[index].Key, (JsonTree)new JsonRaw(Raw)))),
        JsonArrayTree a when index < a.Items.Length => new JsonArrayTree(With(a.Items, index, (JsonTree)new JsonRaw(Raw))),
        _ => null,
    };

    protected override JsonTree ApplyToRoot(JsonTree root) => new JsonRaw(Raw);
}

internal sealed record RemoveNode(uint Node) : JsonEdit(Node)
{
    protected override JsonTree? ApplyToChild(JsonTree parent, int index) => parent switch
    {
        JsonObjectTree o when index < o.Properties.Length => new JsonObjectTree(Without(o.Properties, index)),
        JsonArrayTree a when index < a.Items.Length => new JsonArrayTree(Without(a.Items, index)),
        _ => null,
    };
}

/// <summary>The same key again right after it (or another array element), with another value.</summary>
internal sealed record DuplicateKey(uint Node, string Raw) : JsonEdit(Node)
{
    protected override JsonTree? ApplyToChild(JsonTree parent, int index) => parent switch
    {
        JsonObjectTree o when index < o.Properties.Length => new JsonObjectTree(Inserted(o.Properties, index + 1, (o.Properties[index].Key, (JsonTree)new JsonRaw(Raw)))),
        JsonArrayTree a when index < a.Items.Length => new JsonArrayTree(Inserted(a.Items, index + 1, (JsonTree)new JsonRaw(Raw))),
        _ => null,
    };
}

/// <summary>Wraps the node in <see cref="Depth"/> arrays (or single-key objects).</summary>
internal sealed record Nest(uint Node, int Depth, bool InObjects) : JsonEdit(Node)
{
    protected override JsonTree? ApplyToChild(JsonTree parent, int index) => parent switch
    {
        JsonObjectTree o when index < o.Properties.Length => new JsonObjectTree(With(o.Properties, index, (o.Properties[index].Key, Wrap(o.Properties[index].Value)))),
        JsonArrayTree a when index < a.Items.Length => new JsonArrayTree(With(a.Items, index, Wrap(a.Items[index]))),
        _ => null,
    };

    protected override JsonTree ApplyToRoot(JsonTree root) => Wrap(root);

    private JsonTree Wrap(JsonTree node)
    {
        for (int i = 0; i < Depth; i++)
        {
            node = InObjects ? new JsonObjectTree([("a", node)]) : new JsonArrayTree([node]);
        }

        return node;
    }
}

internal sealed record RenameKey(uint Node, string Key) : JsonEdit(Node)
{
    protected override JsonTree? ApplyToChild(JsonTree parent, int index) => parent switch
    {
        JsonObjectTree o when index < o.Properties.Length => new JsonObjectTree(With(o.Properties, index, (Key, o.Properties[index].Value))),
        _ => null,
    };
}

/// <summary>A new property in the node if it is an object (else in its parent object), first.</summary>
internal sealed record AddProperty(uint Node, string Key, string Raw) : JsonEdit(Node)
{
    protected override JsonTree? ApplyToChild(JsonTree parent, int index) => parent switch
    {
        JsonObjectTree o when index < o.Properties.Length && o.Properties[index].Value is JsonObjectTree child =>
            new JsonObjectTree(With(o.Properties, index, (o.Properties[index].Key, Add(child)))),
        JsonArrayTree a when index < a.Items.Length && a.Items[index] is JsonObjectTree child => new JsonArrayTree(With(a.Items, index, Add(child))),
        JsonObjectTree o => Add(o),
        _ => null,
    };

    protected override JsonTree ApplyToRoot(JsonTree root) => root is JsonObjectTree o ? Add(o) : root;

    private JsonTree Add(JsonObjectTree o) => new JsonObjectTree(Inserted(o.Properties, 0, (Key, (JsonTree)new JsonRaw(Raw))));
}
