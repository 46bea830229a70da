namespace PaliGemma.Gguf.Hub;

/// <summary>Progress of downloading one file of a Hub repository.</summary>
/// <param name="FileName">The file's path in the repository.</param>
/// <param name="FileIndex">Zero-based index of the file among those being downloaded.</param>
/// <param name="FileCount">Files to download.</param>
/// <param name="BytesDone">Bytes of this file on disk so far (a resumed download starts above 0).</param>
/// <param name="TotalBytes">The file's size.</param>
/// <param name="ResumedFrom">Bytes that were already on disk when this download started.</param>
/// <param name="Elapsed">Time since this file's download started.</param>
public sealed record DownloadProgress(string FileName, int FileIndex, int FileCount, long BytesDone, long TotalBytes, long ResumedFrom, TimeSpan Elapsed)
{
    /// <summary>Bytes per second received in this download (resumed bytes excluded).</summary>
    public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? (BytesDone - ResumedFrom) / Elapsed.TotalSeconds : 0;
}
