using System.Text.RegularExpressions;

namespace PaliGemma.Gguf.Hub;

/// <summary>A Hugging Face Hub model repository name, <c>owner/name</c>.</summary>
public sealed partial record HubRepositoryName(string Owner, string Name)
{
    public override string ToString() => $"{Owner}/{Name}";

    /// <summary>
    /// Parses <c>owner/name</c> as the Hub spells repository names (letters, digits, '-', '_', '.',
    /// no leading punctuation, no "..", at most 96 characters each); null for anything else.
    /// </summary>
    public static HubRepositoryName? TryParse(string? text)
    {
        if (text is null)
        {
            return null;
        }

        var match = NamePattern().Match(text);
        if (!match.Success || text.Contains("..", StringComparison.Ordinal))
        {
            return null;
        }

        return new HubRepositoryName(match.Groups[1].Value, match.Groups[2].Value);
    }

    /// <summary>
    /// True when a command-line value meant as a path names no local file or folder but reads as a
    /// Hub repository (and is no misspelt GGUF file name): then it is pulled from the Hub instead.
    /// </summary>
    public static bool IsHubReference(string? value) =>
        value is not null && TryParse(value) is not null && !value.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)
        && !File.Exists(value) && !Directory.Exists(value);

    [GeneratedRegex("^([A-Za-z0-9][A-Za-z0-9._-]{0,95})/([A-Za-z0-9][A-Za-z0-9._-]{0,95})$")]
    private static partial Regex NamePattern();
}
