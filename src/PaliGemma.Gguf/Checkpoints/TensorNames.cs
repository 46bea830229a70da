namespace PaliGemma.Gguf.Checkpoints;

/// <summary>
/// Maps the naming schemes PaliGemma checkpoints are saved with onto one canonical scheme:
/// <c>text.*</c> (Gemma decoder, without its <c>model.</c>), <c>vision.*</c> (SigLIP, without
/// <c>vision_model.</c>), <c>projector.*</c> and <c>lm_head.weight</c>.
/// </summary>
/// <remarks>
/// Published checkpoints use <c>language_model.model.*</c>, <c>vision_tower.vision_model.*</c> and
/// <c>multi_modal_projector.linear.*</c>; transformers 4.52 and later save
/// <c>model.language_model.*</c>, <c>model.vision_tower.*</c>, <c>model.multi_modal_projector.*</c>
/// and a top-level <c>lm_head.weight</c>.
/// </remarks>
public static class TensorNames
{
    private static readonly (string Prefix, string Canonical)[] Prefixes =
    [
        ("language_model.model.", "text."),
        ("language_model.lm_head.", "lm_head."),
        ("language_model.", "text."),
        ("vision_tower.vision_model.", "vision."),
        ("vision_tower.", "vision."),
        ("multi_modal_projector.linear.", "projector."),
        ("multi_modal_projector.", "projector."),
    ];

    public static string Canonicalize(string name)
    {
        string rest = name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..] : name;
        foreach (var (prefix, canonical) in Prefixes)
        {
            if (rest.StartsWith(prefix, StringComparison.Ordinal))
            {
                return canonical + rest[prefix.Length..];
            }
        }

        return rest;
    }

    /// <summary>
    /// Text read from a file (a tensor name, a key, a token, or an exception message quoting the file,
    /// as System.Text.Json's do), as an error message shows it. A hostile file can put any characters
    /// and any length there, and <see cref="PaliGemmaException"/> promises a one-line message: control
    /// and line-separator characters are escaped, and the middle of long text is left out (the end of
    /// a JSON error says where the error is).
    /// </summary>
    internal static string ForMessage(string text)
    {
        const int Head = 160, Tail = 80;
        if (text.Length > Head + Tail + 20)
        {
            return Escape(text.AsSpan(0, Head)) + $" ...[{text.Length - Head - Tail} characters]... " + Escape(text.AsSpan(text.Length - Tail));
        }

        return Escape(text);
    }

    private static string Escape(ReadOnlySpan<char> text)
    {
        var escaped = new System.Text.StringBuilder(text.Length + 8);
        foreach (char c in text)
        {
            if (char.IsControl(c) || c is '\u2028' or '\u2029')
            {
                escaped.Append($"\\u{(int)c:x4}");
            }
            else
            {
                escaped.Append(c);
            }
        }

        return escaped.ToString();
    }
}
