using PaliGemma.Gguf.Hub;

namespace PaliGemma.Cli.Shared;

/// <summary>
/// Shows download progress on stderr: a rewritten bar on a terminal, a line every few seconds
/// otherwise, and one summary line per finished file.
/// </summary>
public sealed class ConsoleDownloadProgress : IProgress<DownloadProgress>
{
    private const int BarWidth = 24;
    private readonly TextWriter _output;
    private readonly StatusLine _status;
    private DownloadProgress? _last;

    public ConsoleDownloadProgress(TextWriter output, bool interactive)
    {
        _output = output;
        _status = new StatusLine(output, interactive, 100);
    }

    public static ConsoleDownloadProgress ForStandardError() => new(Console.Error, !Console.IsErrorRedirected);

    public void Report(DownloadProgress value)
    {
        if (_last is not null && _last.FileName != value.FileName)
        {
            Complete();
        }

        if (_last is null)
        {
            string resumed = value.ResumedFrom > 0 ? $", resuming at {ConsoleProgress.Bytes(value.ResumedFrom)}" : "";
            _output.WriteLine($"downloading [{value.FileIndex + 1}/{value.FileCount}] {value.FileName} ({ConsoleProgress.Bytes(value.TotalBytes)}{resumed})");
        }

        _last = value;
        _status.Show(Describe(value), final: value.BytesDone == value.TotalBytes);
    }

    /// <summary>Ends the current file's bar with its summary.</summary>
    public void Complete()
    {
        if (_last is null)
        {
            return;
        }

        _status.Clear();
        _output.WriteLine($"  {ConsoleProgress.Bytes(_last.BytesDone)} in {_last.Elapsed.TotalSeconds:F1} s ({ConsoleProgress.Bytes((long)_last.BytesPerSecond)}/s), checksum verified");
        _last = null;
    }

    private static string Describe(DownloadProgress p)
    {
        double fraction = p.TotalBytes > 0 ? Math.Clamp((double)p.BytesDone / p.TotalBytes, 0, 1) : 0;
        int filled = (int)(fraction * BarWidth);
        string bar = new string('#', filled) + new string('.', BarWidth - filled);
        return $"  [{bar}] {fraction * 100,3:F0}% {ConsoleProgress.Bytes(p.BytesDone)} / {ConsoleProgress.Bytes(p.TotalBytes)} {ConsoleProgress.Bytes((long)p.BytesPerSecond)}/s";
    }
}
