using PaliGemma.Gguf.Inference;

namespace PaliGemma.Cli.Shared;

/// <summary>llama.cpp and mtmd log a lot: quiet unless --verbose.</summary>
internal static class NativeLogging
{
    public static void Configure(bool verbose) => NativeLog.Sink = verbose ? line => Console.Error.WriteLine(line) : null;
}
