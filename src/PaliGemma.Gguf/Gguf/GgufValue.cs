using System.Globalization;

namespace PaliGemma.Gguf.Gguf;

/// <summary>The value types of GGUF metadata (gguf.h).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// One metadata value: a scalar (boxed), a string, or an array (<see cref="ElementType"/> says of what;
/// <see cref="Value"/> is then a typed .NET array).
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public static GgufValue Of(string value) => new(GgufValueType.String, value);

    public static GgufValue Of(uint value) => new(GgufValueType.UInt32, value);

    public static GgufValue Of(int value) => new(GgufValueType.Int32, value);

    public static GgufValue Of(float value) => new(GgufValueType.Float32, value);

    public static GgufValue Of(bool value) => new(GgufValueType.Bool, value);

    public static GgufValue Array(string[] values) => new(GgufValueType.Array, values, GgufValueType.String);

    public static GgufValue Array(float[] values) => new(GgufValueType.Array, values, GgufValueType.Float32);

    public static GgufValue Array(int[] values) => new(GgufValueType.Array, values, GgufValueType.Int32);

    public int ArrayLength => Value is System.Array a ? a.Length : 0;

    /// <summary>A short human-readable form (arrays show their type, length and first elements).</summary>
    public override string ToString()
    {
        if (Value is System.Array array)
        {
            var head = array.Cast<object>().Take(5).Select(Format);
            return $"[{ElementType} x {array.Length}] {string.Join(", ", head)}{(array.Length > 5 ? ", ..." : "")}";
        }

        return Format(Value);
    }

    private static string Format(object value) => value switch
    {
        string s => "\"" + (s.Length > 60 ? s[..60] + "..." : s).Replace("\n", "\\n", StringComparison.Ordinal) + "\"",
        float f => f.ToString("G9", CultureInfo.InvariantCulture),
        double d => d.ToString("G17", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };
}
