using System.Diagnostics;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>Runs one of the programs as a child process, as a user would, and captures everything.</summary>
public static class CliProcess
{
    public sealed record Result(int ExitCode, string StandardOutput, string StandardError)
    {
        public string[] ErrorLines => StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries);

        /// <summary>
        /// The one error line: progress lines ("loading ...") may come before it, but exactly one line
        /// is an error, it is the last, and no stack trace follows.
        /// </summary>
        public string SingleErrorLine()
        {
            var errors = ErrorLines.Where(l => l.StartsWith("error: ", StringComparison.Ordinal)).ToList();
            if (errors.Count != 1 || ErrorLines[^1] != errors[0] || StandardError.Contains("   at ", StringComparison.Ordinal))
            {
                throw new Xunit.Sdk.XunitException($"expected exactly one error line, last, without a stack trace; stderr was:\n{StandardError}");
            }

            return errors[0];
        }
    }

    public static Result Run(string program, params string[] arguments) => Run(program, TimeSpan.FromMinutes(3), arguments);

    public static Result Run(string program, IReadOnlyDictionary<string, string> environment, params string[] arguments) =>
        Run(program, TimeSpan.FromMinutes(3), environment, arguments);

    public static Result Run(string program, TimeSpan timeout, params string[] arguments) =>
        Run(program, timeout, new Dictionary<string, string>(), arguments);

    public static Result Run(string program, TimeSpan timeout, IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        using var process = Start(program, environment, arguments);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in {timeout}");
        }

        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Starts the program with redirected output; the caller owns the process.</summary>
    public static Process Start(string program, params string[] arguments) => Start(program, new Dictionary<string, string>(), arguments);

    private static Process Start(string program, IReadOnlyDictionary<string, string> environment, string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, program + ".dll"));
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return Process.Start(start) ?? throw new InvalidOperationException($"cannot start {program}");
    }
}
