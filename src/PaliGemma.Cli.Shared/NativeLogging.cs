using PaliGemma.Gguf.Inference;

namespace PaliGemma.Cli.Shared;

/// <summary>llama.cpp and mtmd log a lot: quiet unless --verbose.</summary>
public static class NativeLogging
{
    public static void Configure(bool verbose) => NativeLog.Sink = verbose ? line => Console.Error.WriteLine(line) : null;
}
