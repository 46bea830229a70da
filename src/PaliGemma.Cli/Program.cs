using System.CommandLine;

namespace PaliGemma.Cli;

/// <summary><c>paligemma</c>: run PaliGemma on a picture, inspect and quantize GGUF files.</summary>
public static class Program
{
    public static int Main(string[] args) => BuildCommand().Parse(args).Invoke();

    public static RootCommand BuildCommand() => new("Run Google's PaliGemma vision-language models locally on llama.cpp: image + prompt -> text.")
    {
        RunCommand.Build(),
        Batch.BatchCommand.Build(),
        PullCommand.Build(),
        InspectCommand.Build(),
        QuantizeCommand.Build(),
        AnnotateCommand.Build(),
        ServeCommand.Build(),
    };
}
