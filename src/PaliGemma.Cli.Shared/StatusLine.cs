using System.Diagnostics;

namespace PaliGemma.Cli.Shared;

/// <summary>
/// The one status line progress displays share: on a terminal, rewritten in place at most ten times a second;
/// otherwise (logs, CI) a plain line every five seconds, so a log is neither flooded nor silent.
/// </summary>
internal sealed class StatusLine(TextWriter output, bool interactive, int width)
{
    private readonly Stopwatch _sinceLastLine = Stopwatch.StartNew();

    /// <summary>Shows <paramref name="text"/> when it is time to; <paramref name="final"/> forces it on a terminal.</summary>
    public void Show(string text, bool final)
    {
        if (interactive && (_sinceLastLine.ElapsedMilliseconds >= 100 || final))
        {
            output.Write("\r" + text.PadRight(width));
            _sinceLastLine.Restart();
        }
        else if (!interactive && _sinceLastLine.ElapsedMilliseconds >= 5000)
        {
            output.WriteLine(text);
            _sinceLastLine.Restart();
        }
    }

    /// <summary>Blanks the rewritten line on a terminal, before a summary line takes its place.</summary>
    public void Clear()
    {
        if (interactive)
        {
            output.Write("\r" + new string(' ', width) + "\r");
        }
    }
}
