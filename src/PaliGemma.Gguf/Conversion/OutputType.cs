using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// A GGUF file type the converter can write: the type of the large weight matrices (norms and
/// biases always stay F32) and llama.cpp's <c>general.file_type</c> number (<c>llama_ftype</c>).
/// </summary>
public sealed record OutputType(string Name, GgmlType WeightType, int FileType)
{
    public static readonly OutputType F32 = new("f32", GgmlType.F32, 0);
    public static readonly OutputType F16 = new("f16", GgmlType.F16, 1);
    public static readonly OutputType BF16 = new("bf16", GgmlType.BF16, 32);
    public static readonly OutputType Q8_0 = new("q8_0", GgmlType.Q8_0, 7);

    /// <summary>Types for the text model.</summary>
    public static IReadOnlyList<OutputType> TextTypes { get; } = [F32, F16, BF16];

    /// <summary>Types for the mmproj.</summary>
    public static IReadOnlyList<OutputType> MmprojTypes { get; } = [F32, F16];

    public static OutputType Parse(string name, IReadOnlyList<OutputType> allowed, string what)
    {
        var match = allowed.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase));
        return match ?? throw new PaliGemmaException($"unknown {what} type '{name}'; valid types: {string.Join(", ", allowed.Select(t => t.Name))}");
    }

    public override string ToString() => Name;
}
