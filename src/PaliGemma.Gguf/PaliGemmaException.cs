namespace PaliGemma.Gguf;

/// <summary>
/// The one exception type the library throws for bad input or a failed operation: a missing or
/// corrupt file, an unsupported model, a prompt that does not fit. <see cref="Exception.Message"/>
/// is a single line that names the file (when there is one) and the problem.
/// </summary>
public sealed class PaliGemmaException : Exception
{
    public PaliGemmaException(string message)
        : base(message)
    {
    }

    public PaliGemmaException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The file the problem is in, when there is one.</summary>
    public string? FilePath { get; init; }

    internal static PaliGemmaException InFile(string path, string problem) =>
        new($"{path}: {problem}") { FilePath = path };

    internal static PaliGemmaException InFile(string path, string problem, Exception inner) =>
        new($"{path}: {problem}", inner) { FilePath = path };
}
