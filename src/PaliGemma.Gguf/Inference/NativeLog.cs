using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>Where llama.cpp and mtmd log lines go (default: dropped).</summary>
public static class NativeLog
{
    public static Action<string>? Sink
    {
        get => NativeLibraries.LogSink;
        set => NativeLibraries.LogSink = value;
    }
}
