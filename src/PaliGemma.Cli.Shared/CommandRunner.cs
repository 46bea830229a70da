using PaliGemma.Gguf;
using PaliGemma.Gguf.Conversion;

namespace PaliGemma.Cli.Shared;

/// <summary>
/// Runs a command body the way both programs promise: Ctrl+C / SIGTERM cancel it and remove
/// half-written outputs; errors are one line on stderr with exit code 1 (a stack trace only with
/// --verbose); an interruption exits with 130.
/// </summary>
public static class CommandRunner
{
    public const int Failure = 1;
    public const int Interrupted = 130;

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
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
