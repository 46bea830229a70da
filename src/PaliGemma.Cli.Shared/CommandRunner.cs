using PaliGemma.Gguf;
using PaliGemma.Gguf.Conversion;

namespace PaliGemma.Cli.Shared;

/// <summary>
/// Runs a command body the way the programs promise: Ctrl+C / SIGTERM cancel it and remove
/// half-written outputs; a problem with the user's input or files (<see cref="PaliGemmaException"/>,
/// I/O, permissions) is one line on stderr with exit code 1; anything else is a bug in this program
/// and says so on one line with exit code 70, so that it is neither mistaken for bad input nor
/// hidden behind a generic message; the stack trace only with --verbose. An interruption exits
/// with 130. (Command-line syntax errors never get here: the parser reports them.)
/// </summary>
public static class CommandRunner
{
    public const int Failure = 1;

    /// <summary>sysexits.h's EX_SOFTWARE: an internal software error.</summary>
    public const int InternalError = 70;
    public const int Interrupted = 130;

    /// <summary>
    /// Set to 1, the body is replaced by a throw of an exception no code expects: the only way to
    /// exercise the internal-error path of the real programs from their tests (like git's GIT_TEST_*).
    /// </summary>
    public const string InjectInternalErrorVariable = "PALIGEMMA_TEST_INJECT_INTERNAL_ERROR";

    public static int Run(bool verbose, Func<CancellationToken, int> body)
    {
        using var cancellation = new CancellationTokenSource();
        // The first Ctrl+C asks the work to stop at its next check (native calls finish first); a
        // second one exits at once. Either way no half-written output survives.
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            if (cancellation.IsCancellationRequested)
            {
                TemporaryFiles.DeleteAll();
                Environment.Exit(Interrupted);
            }

            cancellation.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            cancellation.Cancel();
        });
        try
        {
            if (Environment.GetEnvironmentVariable(InjectInternalErrorVariable) == "1")
            {
                throw new InvalidOperationException($"injected by {InjectInternalErrorVariable}");
            }

            return body(cancellation.Token);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            TemporaryFiles.DeleteAll();
            Console.Out.Flush();
            Console.Error.WriteLine();
            Console.Error.WriteLine("interrupted");
            return Interrupted;
        }
        catch (Exception e) when (e is PaliGemmaException or IOException or UnauthorizedAccessException)
        {
            TemporaryFiles.DeleteAll();
            Console.Out.Flush();
            Console.Error.WriteLine($"error: {OneLine(e.Message)}");
            if (verbose)
            {
                Console.Error.WriteLine(e);
            }

            return Failure;
        }
        catch (Exception e)
        {
            // Deliberately everything else: a bug must not reach System.CommandLine, whose handler
            // prints a multi-line stack trace, and must not read like a problem with the input.
            TemporaryFiles.DeleteAll();
            Console.Out.Flush();
            Console.Error.WriteLine($"internal error (a bug in {ProgramName()}, not in your input): {e.GetType().Name}: {OneLine(e.Message)}; " +
                "please report it on the PaliGemma.Gguf issue tracker with the command and its output under --verbose");
            if (verbose)
            {
                Console.Error.WriteLine(e);
            }

            return InternalError;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static string ProgramName() => Path.GetFileNameWithoutExtension(Environment.GetCommandLineArgs()[0]);

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
