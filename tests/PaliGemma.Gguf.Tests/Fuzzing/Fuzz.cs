namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// What the fuzz tests share: the iteration count, the golden inputs and the guarded call that
/// decides whether one outcome is acceptable.
/// </summary>
/// <remarks>
/// The contract under test (issue "Hostile and broken inputs"): a corrupt file may make the library
/// refuse, but only with a <see cref="PaliGemmaException"/> whose one-line message names the file, and
/// never by hanging or by allocating without bound. CI runs a few hundred cases per test; a longer run:
/// <code>PALIGEMMA_FUZZ_ITERATIONS=100000 dotnet test tests/PaliGemma.Gguf.Tests --filter Category=Fuzz</code>
/// A failure prints a CsCheck seed; <c>CsCheck_Seed=&lt;seed&gt;</c> replays it.
/// </remarks>
internal static class Fuzz
{
    public const string Category = "Fuzz";

    public const string IterationsVariable = "PALIGEMMA_FUZZ_ITERATIONS";

    /// <summary>
    /// A hostile input of a few megabytes must not make one call allocate more than this: the readers
    /// check every length against the file before allocating, so only a missing check gets near it.
    /// </summary>
    public const long MaxAllocatedBytes = 64L << 20;

    /// <summary>Far above what any case takes (milliseconds); only a hang or a quadratic blow-up reaches it.</summary>
    public static readonly TimeSpan HangTimeout = TimeSpan.FromSeconds(5);

    private static readonly Lazy<string> Root = new(FindRepositoryRoot);

    /// <summary><paramref name="ciDefault"/> cases, or the count in PALIGEMMA_FUZZ_ITERATIONS for a longer run.</summary>
    public static long Iterations(long ciDefault) =>
        long.TryParse(Environment.GetEnvironmentVariable(IterationsVariable), out long count) && count > 0 ? count : ciDefault;

    public static string RepositoryRoot => Root.Value;

    public static string GoldenCheckpoint => Path.Combine(RepositoryRoot, "tests", "fixtures", "golden", "models", "tiny-paligemma-224");

    /// <summary>
    /// Runs <paramref name="action"/> through <see cref="Guard"/> and throws <see cref="FuzzFailure"/>
    /// unless it succeeded or threw a one-line <see cref="PaliGemmaException"/> naming <paramref name="path"/>
    /// (a file, or a folder whose files it may name).
    /// </summary>
    /// <returns>The outcome's class, for CsCheck's summary table: "accepted" or the refusal's problem, numbers and names blanked.</returns>
    public static string Expect(string path, Action action)
    {
        var thrown = Guard(path, action);
        switch (thrown)
        {
            case null:
                return "accepted";
            case PaliGemmaException e when !NamesPath(e, path):
                throw new FuzzFailure($"{path}: PaliGemmaException does not name the file (FilePath '{e.FilePath}'): {e.Message}", e);
            case PaliGemmaException e when e.Message.Contains('\n', StringComparison.Ordinal) || e.Message.Contains('\r', StringComparison.Ordinal):
                throw new FuzzFailure($"{path}: PaliGemmaException message is not one line: {e.Message}", e);
            case PaliGemmaException e:
                return Classify(e.Message, path);
            default:
                throw new FuzzFailure($"{path}: {thrown.GetType().FullName} instead of PaliGemmaException: {thrown.Message}", thrown);
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> on a thread of its own (so the hang guard cannot be defeated by
    /// task inlining, and the allocation count is that thread's alone); throws <see cref="FuzzFailure"/>
    /// on a hang or an allocation over <see cref="MaxAllocatedBytes"/>, else returns what it threw.
    /// </summary>
    public static Exception? Guard(string what, Action action)
    {
        Exception? thrown = null;
        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                action();
            }
            catch (Exception e)
            {
                thrown = e;
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        })
        {
            IsBackground = true,
            Name = "fuzz case",
        };
        thread.Start();
        if (!thread.Join(HangTimeout))
        {
            // The thread is left running (a background thread cannot be aborted); the test fails anyway.
            throw new FuzzFailure($"{what}: no answer within {HangTimeout.TotalSeconds} s (hang?)");
        }

        if (allocated > MaxAllocatedBytes)
        {
            throw new FuzzFailure($"{what}: one call allocated {allocated:N0} bytes (limit {MaxAllocatedBytes:N0}); outcome {thrown?.GetType().Name ?? "success"}", thrown);
        }

        return thrown;
    }

    private static string Classify(string message, string path)
    {
        string problem = message.Replace(path, "", StringComparison.Ordinal);
        problem = System.Text.RegularExpressions.Regex.Replace(problem, "'[^']*'|\"[^\"]*\"|\\[[^\\]]*\\]|[0-9]+|/[^ :]+", "_");
        return "refused: " + (problem.Length > 70 ? problem[..70] : problem);
    }

    private static bool NamesPath(PaliGemmaException e, string path) =>
        (e.FilePath is not null && e.FilePath.StartsWith(path, StringComparison.Ordinal))
        || e.Message.Contains(path, StringComparison.Ordinal);

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "PaliGemma.Gguf.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"no PaliGemma.Gguf.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>An outcome the contract forbids; CsCheck shrinks the case that produced it.</summary>
internal sealed class FuzzFailure(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A scratch folder for one test, deleted with everything in it when the test ends.</summary>
internal sealed class ScratchFolder : IDisposable
{
    private readonly ThreadLocal<string> _perThread;
    private int _threads;

    public ScratchFolder(string name)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"paligemma-fuzz-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
        _perThread = new ThreadLocal<string>(() =>
        {
            string folder = System.IO.Path.Combine(Path, $"thread{Interlocked.Increment(ref _threads)}");
            Directory.CreateDirectory(folder);
            return folder;
        });
    }

    public string Path { get; }

    /// <summary>A folder of this thread's own: CsCheck runs cases on several threads at once.</summary>
    public string ThreadFolder => _perThread.Value!;

    /// <summary>A new file name for one case.</summary>
    public string NewFile(string extension) => System.IO.Path.Combine(Path, $"{Guid.NewGuid():N}{extension}");

    /// <summary>Copies every file of <paramref name="source"/> into <paramref name="destination"/>, writable.</summary>
    public static void CopyFiles(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (string file in Directory.GetFiles(source))
        {
            string target = System.IO.Path.Combine(destination, System.IO.Path.GetFileName(file));
            File.Copy(file, target, overwrite: true);
            // The fixtures are read-only; the copies are overwritten case after case.
            File.SetAttributes(target, FileAttributes.Normal);
        }
    }

    public static void TryDelete(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A case that hung may still hold it; the folder goes at the end of the test.
        }
    }

    public void Dispose()
    {
        _perThread.Dispose();
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left for the OS's temp cleanup rather than failing a test that passed.
        }
    }
}
