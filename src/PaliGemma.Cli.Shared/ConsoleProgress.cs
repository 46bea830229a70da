using PaliGemma.Gguf.Conversion;

namespace PaliGemma.Cli.Shared;

/// <summary>
/// Shows conversion progress on stderr: one rewritten line on a terminal, a line every few
/// seconds otherwise (logs, CI), and a summary line per finished file.
/// </summary>
public sealed class ConsoleProgress : IProgress<ConversionProgress>
{
    private readonly TextWriter _output;
    private readonly StatusLine _status;
    private string? _currentFile;
    private ConversionProgress? _last;

    public ConsoleProgress(TextWriter output, bool interactive)
    {
        _output = output;
        _status = new StatusLine(output, interactive, 110);
    }

    public static ConsoleProgress ForStandardError() => new(Console.Error, !Console.IsErrorRedirected);

    public void Report(ConversionProgress value)
    {
        if (_currentFile != value.FilePath)
        {
            Complete();
            _currentFile = value.FilePath;
            _output.WriteLine($"writing {value.FilePath}");
        }

        _last = value;
        _status.Show(Describe(value), final: value.BytesWritten == value.TotalBytes);
    }

    /// <summary>Ends the current file's progress with its summary.</summary>
    public void Complete()
    {
        if (_last is null)
        {
            return;
        }

        _status.Clear();
        _output.WriteLine($"  {_last.TensorCount} tensors, {Bytes(_last.TotalBytes)} in {_last.Elapsed.TotalSeconds:F1} s ({Bytes((long)_last.BytesPerSecond)}/s)");
        _last = null;
    }

    private static string Describe(ConversionProgress p)
    {
        double percent = p.TotalBytes == 0 ? 100 : 100.0 * p.BytesWritten / p.TotalBytes;
        string tensor = p.TensorName.Length > 32 ? p.TensorName[..32] : p.TensorName;
        return $"  [{p.TensorIndex + 1}/{p.TensorCount}] {tensor,-32} {Bytes(p.BytesWritten)} / {Bytes(p.TotalBytes)} ({percent:F0}%) {Bytes((long)p.BytesPerSecond)}/s";
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):F1} KiB",
        _ => $"{bytes} B",
    };
}
