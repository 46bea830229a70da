using System.Diagnostics;

namespace PaliGemma.Cli.Batch;

/// <summary>
/// Progress on stderr: items done of the total, the rate of this run and the time left at that rate.
/// On a terminal the line is redrawn in place; redirected, one line per item (logs stay readable).
/// </summary>
internal sealed class BatchProgress(TextWriter error, int total, int alreadyDone, bool interactive)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _doneThisRun;
    private int _failed;

    public void Report(string image, bool failed)
    {
        _doneThisRun++;
        _failed += failed ? 1 : 0;
        int done = alreadyDone + _doneThisRun;
        double perMinute = _doneThisRun / Math.Max(_clock.Elapsed.TotalMinutes, 1e-9);
        var left = TimeSpan.FromMinutes((total - done) / Math.Max(perMinute, 1e-9));
        string line = $"[{done}/{total}] {perMinute:F1} items/min, ETA {Format(left)}{(_failed > 0 ? $", {_failed} failed" : "")}  {Path.GetFileName(image)}";
        if (interactive)
        {
            error.Write($"\r{line,-100}");
        }
        else
        {
            error.WriteLine(line);
        }
    }

    public void Finish(bool interrupted)
    {
        if (interactive)
        {
            error.WriteLine();
        }

        string state = interrupted ? "interrupted" : "done";
        error.WriteLine($"{state}: {_doneThisRun} items in {Format(_clock.Elapsed)}{(_failed > 0 ? $", {_failed} failed (error lines in the output)" : "")}");
    }

    private static string Format(TimeSpan span) =>
        span.TotalHours >= 1 ? $"{(int)span.TotalHours}:{span.Minutes:D2}:{span.Seconds:D2}" : $"{span.Minutes}:{span.Seconds:D2}";
}
