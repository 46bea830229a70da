namespace PaliGemma.Bench.Generation;

/// <summary>
/// Writes a file under a hidden temporary name next to its target and renames it only when it is
/// complete, so an interrupted or failed run leaves no finished-looking file behind.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Large enough that small tensors and headers coalesce into few write calls.</summary>
    private const int BufferSize = 4 << 20;

    private const string TemporarySuffix = ".tmp";

    public static void Write(string path, Action<Stream> write, CancellationToken cancellationToken = default)
    {
        string fullPath = Path.GetFullPath(path);
        string temporary = Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Environment.ProcessId}{TemporarySuffix}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, BufferSize))
            {
                write(stream);
            }

            cancellationToken.ThrowIfCancellationRequested();
            File.Move(temporary, fullPath, overwrite: true);
        }
        finally
        {
            // Still there only when writing failed or was cancelled.
            File.Delete(temporary);
        }
    }

    /// <summary>The name of the file a temporary (<c>.{name}.{pid}.tmp</c>) was being written as; null for other files.</summary>
    public static string? TargetOfTemporary(string fileName)
    {
        if (!fileName.StartsWith('.') || !fileName.EndsWith(TemporarySuffix, StringComparison.Ordinal))
        {
            return null;
        }

        string inner = fileName[1..^TemporarySuffix.Length];
        int dot = inner.LastIndexOf('.');
        return dot > 0 && dot < inner.Length - 1 && inner[(dot + 1)..].All(char.IsAsciiDigit) ? inner[..dot] : null;
    }
}
