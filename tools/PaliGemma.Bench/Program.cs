using System.CommandLine;

namespace PaliGemma.Bench;

/// <summary><c>paligemma-bench</c>: benchmark helpers that need no downloaded weights.</summary>
public static class Program
{
    public static int Main(string[] args) => BuildCommand().Parse(args).Invoke();

    public static RootCommand BuildCommand() => new("Benchmark helpers for PaliGemma.Gguf.")
    {
        GenerateCommand.Build(),
        MeasureCommands.BuildBare(),
        MeasureCommands.BuildBareBatch(),
        EngineCommand.Build(),
        MeasureCommands.BuildBandwidth(),
        BenchCommand.Build(),
        AccuracyCommand.Build(),
        TaskAccuracy.TrainedAccuracyCommand.Build(),
        DecodeCommand.Build(),
        ServeLoadCommand.Build(),
    };
}
