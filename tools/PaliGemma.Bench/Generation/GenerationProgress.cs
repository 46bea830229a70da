using System.Diagnostics;

namespace PaliGemma.Bench.Generation;

/// <summary>
/// Reports bytes written and the rate on stderr: one rewritten line on a terminal, a line every
/// few seconds otherwise (logs), and a summary line per finished file.
/// </summary>
internal sealed class GenerationProgress
{
    private readonly TextWriter _output;
    private readonly bool _interactive;
    private readonly long _totalBytes;
    private readonly Stopwatch _total = Stopwatch.StartNew();
    private readonly Stopwatch _file = new();
    private readonly Stopwatch _sinceLastLine = Stopwatch.StartNew();
    private string _fileName = "";
    private long _fileBytes;
    private long _fileWritten;
    private long _totalWritten;

    public GenerationProgress(TextWriter output, bool interactive, long totalBytes)
    {
        _output = output;
        _interactive = interactive;
        _totalBytes = totalBytes;
    }

    public static GenerationProgress ForStandardError(long totalBytes) => new(Console.Error, !Console.IsErrorRedirected, totalBytes);

    public TimeSpan Elapsed => _total.Elapsed;

    public void StartFile(string fileName, long bytes)
    {
        _fileName = fileName;
        _fileBytes = bytes;
        _fileWritten = 0;
        _file.Restart();
    }

    public void Advance(long bytes)
    {
        _fileWritten += bytes;
        _totalWritten += bytes;
        if (_interactive && _sinceLastLine.ElapsedMilliseconds >= 200)
        {
            _output.Write($"\r{Describe(),-100}");
            _sinceLastLine.Restart();
        }
        else if (!_interactive && _sinceLastLine.ElapsedMilliseconds >= 5000)
        {
            _output.WriteLine(Describe());
            _sinceLastLine.Restart();
        }
    }

    public void EndFile()
    {
        if (_interactive)
        {
            _output.Write("\r" + new string(' ', 100) + "\r");
        }

        _output.WriteLine($"  {_fileName}: {Bytes(_fileWritten)} in {_file.Elapsed.TotalSeconds:F1} s ({Rate(_fileWritten, _file.Elapsed)})");
    }

    private string Describe()
    {
        double percent = _totalBytes == 0 ? 100 : 100.0 * _totalWritten / _totalBytes;
        return $"  {_fileName}: {Bytes(_fileWritten)} / {Bytes(_fileBytes)}, total {percent:F0}%, {Rate(_totalWritten, _total.Elapsed)}";
    }

    public static string Rate(long bytes, TimeSpan elapsed) =>
        elapsed.TotalSeconds > 0 ? $"{Bytes((long)(bytes / elapsed.TotalSeconds))}/s" : "-";

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):F1} KiB",
        _ => $"{bytes} B",
    };
}
