using System.Collections.Concurrent;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// Temporary outputs still being written. A program that stops on Ctrl+C or SIGTERM calls
/// <see cref="DeleteAll"/> so that no half-written file survives the process.
/// </summary>
public static class TemporaryFiles
{
    private static readonly ConcurrentDictionary<string, byte> Pending = new();

    /// <summary>A registered temporary path next to <paramref name="finalPath"/>, hidden and unique.</summary>
    internal static string CreatePath(string finalPath)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(finalPath))!;
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, $".{Path.GetFileName(finalPath)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Pending[path] = 0;
        return path;
    }

    internal static void Delete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        Pending.TryRemove(path, out _);
    }

    /// <summary>Deletes every temporary output still registered.</summary>
    public static void DeleteAll()
    {
        foreach (string path in Pending.Keys)
        {
            Delete(path);
        }
    }
}
