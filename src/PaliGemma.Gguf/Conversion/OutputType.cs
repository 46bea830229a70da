using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// A GGUF file type: its name on the command line, llama.cpp's <c>general.file_type</c> number
/// (<c>llama_ftype</c>) and the default type of its weight matrices (llama.cpp's mixes raise some
/// tensors above it; norms and biases stay F32).
/// </summary>
public sealed record OutputType(string Name, int FileType, GgmlType DefaultType)
{
    public static readonly OutputType F32 = new("f32", 0, GgmlType.F32);
    public static readonly OutputType F16 = new("f16", 1, GgmlType.F16);
    public static readonly OutputType BF16 = new("bf16", 32, GgmlType.BF16);
    public static readonly OutputType Q8_0 = new("q8_0", 7, GgmlType.Q8_0);
    public static readonly OutputType Q6_K = new("q6_k", 18, GgmlType.Q6_K);
    public static readonly OutputType Q5_K_M = new("q5_k_m", 17, GgmlType.Q5_K);
    public static readonly OutputType Q5_K_S = new("q5_k_s", 16, GgmlType.Q5_K);
    public static readonly OutputType Q5_0 = new("q5_0", 8, GgmlType.Q5_0);
    public static readonly OutputType Q5_1 = new("q5_1", 9, GgmlType.Q5_1);
    public static readonly OutputType Q4_K_M = new("q4_k_m", 15, GgmlType.Q4_K);
    public static readonly OutputType Q4_K_S = new("q4_k_s", 14, GgmlType.Q4_K);
    public static readonly OutputType Q4_0 = new("q4_0", 2, GgmlType.Q4_0);
    public static readonly OutputType Q4_1 = new("q4_1", 3, GgmlType.Q4_1);

    /// <summary>Types for the text model: llama.cpp's mixes that need no importance matrix.</summary>
    public static IReadOnlyList<OutputType> TextTypes { get; } = [F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q5_0, Q5_1, Q4_K_M, Q4_K_S, Q4_0, Q4_1];

    /// <summary>Types for the mmproj. K-quants need rows of 256 and SigLIP's are 1152 and 4304 wide.</summary>
    public static IReadOnlyList<OutputType> MmprojTypes { get; } = [F32, F16, Q8_0];

    /// <summary>llama.cpp types this converter refuses because they need an importance matrix (llama-imatrix).</summary>
    private static readonly string[] ImportanceMatrixTypes = ["iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_xs", "iq3_s", "iq3_m", "iq4_xs", "iq4_nl", "q2_k_s"];

    /// <summary>Other llama.cpp mixes whose per-tensor rules this converter does not reproduce.</summary>
    private static readonly string[] UnsupportedMixes = ["q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "tq1_0", "tq2_0", "mxfp4_moe"];

    public bool IsQuantized => DefaultType.IsQuantized();

    public static OutputType Parse(string name, IReadOnlyList<OutputType> allowed, string what)
    {
        string normalized = name.Trim().ToLowerInvariant().Replace('-', '_');
        var match = allowed.FirstOrDefault(t => t.Name == normalized);
        if (match is not null)
        {
            return match;
        }

        string valid = string.Join(", ", allowed.Select(t => t.Name));
        if (ImportanceMatrixTypes.Contains(normalized))
        {
            throw new PaliGemmaException($"{what} {name} needs an importance matrix (llama-imatrix calibration data), which this tool does not compute; valid types: {valid}");
        }

        if (allowed == MmprojTypes && TextTypes.Any(t => t.Name == normalized))
        {
            throw new PaliGemmaException($"{what} {name} is not possible for the vision tower: its block size needs rows that are multiples of {TextTypes.First(t => t.Name == normalized).DefaultType.BlockSize()}, but SigLIP's rows are 1152 and 4304 wide; valid types: {valid}");
        }

        if (UnsupportedMixes.Contains(normalized))
        {
            throw new PaliGemmaException($"{what} {name} is a llama.cpp mix this tool does not reproduce; convert to f16 and use llama.cpp's llama-quantize, or pick one of: {valid}");
        }

        throw new PaliGemmaException($"unknown {what} '{name}'; valid types: {valid}");
    }

    public override string ToString() => Name;
}
