using System.Text;
using System.Text.Json;
using PaliGemma.Gguf;

namespace PaliGemma.Cli.Batch;

/// <summary>
/// The batch's JSONL output, appended one whole line per (picture, prompt) and flushed at once, so an
/// interrupted job leaves only whole lines (a line is built in memory and written in one call; a
/// partial last line, possible only if the process is killed mid-write, is cut off by --resume).
/// </summary>
internal sealed class BatchOutput : IDisposable
{
    private readonly FileStream _stream;

    private BatchOutput(FileStream stream, HashSet<(string Image, string Prompt)> done)
    {
        _stream = stream;
        Done = done;
    }

    /// <summary>(image, prompt) pairs the file already holds: --resume skips them.</summary>
    public HashSet<(string Image, string Prompt)> Done { get; }

    public static BatchOutput Open(string path, bool resume)
    {
        var done = new HashSet<(string, string)>();
        bool exists = File.Exists(path) && new FileInfo(path).Length > 0;
        if (exists && !resume)
        {
            throw new PaliGemmaException($"{path} already holds results: pass --resume to continue that job, or choose another --output");
        }

        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            long whole = exists ? ReadDone(stream, path, done) : 0;
            stream.SetLength(whole);
            stream.Seek(whole, SeekOrigin.Begin);
            return new BatchOutput(stream, done);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Writes one line and flushes it to the file before returning.</summary>
    public void Append(ReadOnlySpan<byte> jsonLine)
    {
        var line = new byte[jsonLine.Length + 1];
        jsonLine.CopyTo(line);
        line[^1] = (byte)'\n';
        _stream.Write(line);
        _stream.Flush(flushToDisk: false);
    }

    /// <summary>Reads the finished lines; returns the length of the file up to its last whole line.</summary>
    private static long ReadDone(FileStream stream, string path, HashSet<(string, string)> done)
    {
        using var reader = new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, bufferSize: 1 << 16, leaveOpen: true);
        long position = 0;
        long whole = 0;
        int lineNumber = 0;
        var bytes = new List<byte>();
        stream.Seek(0, SeekOrigin.Begin);
        int value;
        while ((value = stream.ReadByte()) >= 0)
        {
            position++;
            if (value != '\n')
            {
                bytes.Add((byte)value);
                continue;
            }

            lineNumber++;
            whole = position;
            if (bytes.Count > 0)
            {
                done.Add(Key(bytes.ToArray(), path, lineNumber));
            }

            bytes.Clear();
        }

        return whole;
    }

    private static (string, string) Key(byte[] line, string path, int lineNumber)
    {
        try
        {
            using var document = JsonDocument.Parse(line);
            var root = document.RootElement;
            if (root.TryGetProperty("image", out var image) && root.TryGetProperty("prompt", out var prompt)
                && image.ValueKind == JsonValueKind.String && prompt.ValueKind == JsonValueKind.String)
            {
                return (image.GetString()!, prompt.GetString()!);
            }
        }
        catch (JsonException)
        {
        }

        throw new PaliGemmaException($"{path}:{lineNumber}: not a line this command wrote (no \"image\" and \"prompt\"); refusing to resume into it");
    }

    public void Dispose() => _stream.Dispose();
}
