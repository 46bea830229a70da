using System.Diagnostics;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Hostile;

/// <summary>Ctrl+C (SIGINT) sent to the real programs: nothing half-written survives, generation stops promptly.</summary>
public sealed class InterruptionTests
{
    private static readonly Lazy<string> LargeCheckpoint = new(() =>
        SyntheticCheckpoint.Create(TestModels.NewFolder("large"), hidden: 1024, ffn: 4096, layers: 12));

    [Fact]
    public void Sigint_during_conversion_leaves_no_output_and_no_temporary_file()
    {
        string output = TestModels.NewFolder("interrupted-conversion");
        using var process = CliProcess.Start("paligemma-convert", LargeCheckpoint.Value, "--out-dir", output, "--outtype", "q4_k_m");
        WaitForLine(process.StandardError, "writing", TimeSpan.FromSeconds(60));

        Interrupt(process);

        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "the converter did not stop");
        Assert.Equal(130, process.ExitCode);
        Assert.Empty(Directory.GetFileSystemEntries(output));
    }

    [Fact]
    public void Sigint_during_generation_stops_promptly_and_prints_what_was_generated()
    {
        var files = TestModels.Converted("tiny-paligemma-224");
        using var process = CliProcess.Start("paligemma", "run", "--model", files.TextModelPath, "--mmproj", files.MmprojPath, "-i", GoldenData.ImagePath("chelsea"), "-p", "caption en", "-n", "7900");
        string first = WaitForLine(process.StandardOutput, "", TimeSpan.FromSeconds(60));

        var clock = Stopwatch.StartNew();
        Interrupt(process);
        string rest = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(10)), "generation did not stop");

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"stopping took {clock.Elapsed}");
        Assert.Equal(130, process.ExitCode);
        Assert.Contains("interrupted", process.StandardError.ReadToEnd(), StringComparison.Ordinal);
        int generated = (first + "\n" + rest).Count(c => c == '\n');
        Assert.InRange(generated, 1, 7000); // greedy output of this model is newlines: some, not all of them
    }

    private static void Interrupt(Process process)
    {
        using var kill = Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
    }

    private static string WaitForLine(StreamReader reader, string containing, TimeSpan timeout)
    {
        var read = Task.Run(() =>
        {
            while (reader.ReadLine() is { } line)
            {
                if (line.Contains(containing, StringComparison.Ordinal))
                {
                    return line;
                }
            }

            throw new InvalidOperationException($"the stream ended before a line containing '{containing}'");
        });
        Assert.True(read.Wait(timeout), $"no line containing '{containing}' within {timeout}");
        return read.Result;
    }
}
