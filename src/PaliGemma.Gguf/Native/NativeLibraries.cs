using System.Reflection;
using System.Runtime.InteropServices;
using LLama.Native;

namespace PaliGemma.Gguf.Native;

/// <summary>
/// Loads the llama.cpp natives through LLamaSharp (which picks the CPU variant or CUDA) and points
/// this assembly's own <c>[DllImport]</c>s at the same libraries, with logging routed to a callback.
/// </summary>
internal static class NativeLibraries
{
    public const string GgmlBase = "ggml-base";
    public const string Mtmd = "mtmd";
    public const string Llama = "llama";

    private static readonly object Gate = new();
    private static bool _loaded;
    private static volatile Action<string>? _logSink;

    // Kept alive for as long as the natives may call it.
    private static readonly MtmdNative.LogCallback MtmdLogCallback = (level, text, _) => Log(text);

    /// <summary>Where native log lines go; null drops them (the default: llama.cpp is chatty).</summary>
    public static Action<string>? LogSink
    {
        get => _logSink;
        set => _logSink = value;
    }

    /// <summary>Loads the natives once; safe to call from any thread.</summary>
    public static void EnsureLoaded()
    {
        if (_loaded)
        {
            return;
        }

        lock (Gate)
        {
            if (_loaded)
            {
                return;
            }

            try
            {
                if (!NativeLibraryConfig.LLama.LibraryHasLoaded)
                {
                    NativeLibraryConfig.All.WithLogCallback((level, message) => Log(message));
                }

                NativeApi.llama_empty_call();
                _ = NativeApi.MtmdDefaultMarker();
                NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
                MtmdNative.mtmd_log_set(MtmdLogCallback, IntPtr.Zero);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException or LLama.Exceptions.RuntimeError)
            {
                throw new PaliGemmaException($"cannot load the llama.cpp native libraries (LLamaSharp.Backend.Cpu): {e.Message}", e);
            }

            _loaded = true;
        }
    }

    private static void Log(string message)
    {
        _logSink?.Invoke(message.TrimEnd('\n'));
    }

    /// <summary>
    /// LLamaSharp has already loaded libllama/libmtmd and, as their dependency, libggml-base: asking
    /// the loader for the bare file name returns those very libraries (glibc matches loaded sonames).
    /// </summary>
    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string[] candidates = OperatingSystem.IsWindows() ? [$"{name}.dll"]
            : OperatingSystem.IsMacOS() ? [$"lib{name}.dylib"]
            : [$"lib{name}.so"];
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out IntPtr handle))
            {
                return handle;
            }
        }

        return IntPtr.Zero;
    }
}
