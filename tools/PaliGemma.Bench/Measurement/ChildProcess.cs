using System.Diagnostics;
using System.Globalization;

namespace PaliGemma.Bench.Measurement;

/// <summary>Runs one of the programs as a child process under GNU time: wall time and peak RSS of the whole process.</summary>
internal static class ChildProcess
{
    public sealed record Result(double Seconds, long PeakRssBytes, string StandardOutput, double FirstOutputSeconds);

    public static Result Run(string program, params string[] arguments)
    {
        string timeFile = Path.GetTempFileName();
        try
        {
            var start = new ProcessStartInfo("/usr/bin/time")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string argument in new[] { "-f", "%e %M", "-o", timeFile, "dotnet", Path.Combine(AppContext.BaseDirectory, program + ".dll") }.Concat(arguments))
            {
                start.ArgumentList.Add(argument);
            }

            var clock = Stopwatch.StartNew();
            using var process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            double firstOutput = -1;
            var output = new System.Text.StringBuilder();
            int c;
            while ((c = process.StandardOutput.Read()) >= 0)
            {
                if (firstOutput < 0)
                {
                    firstOutput = clock.Elapsed.TotalSeconds;
                }

                output.Append((char)c);
            }

            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} failed ({process.ExitCode}): {stderr.Result}");
            }

            string[] time = File.ReadAllLines(timeFile).Last().Split(' ');
            return new Result(
                double.Parse(time[0], CultureInfo.InvariantCulture),
                long.Parse(time[1], CultureInfo.InvariantCulture) * 1024,
                output.ToString(),
                firstOutput);
        }
        finally
        {
            File.Delete(timeFile);
        }
    }
}
