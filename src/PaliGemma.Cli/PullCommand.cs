using System.CommandLine;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Hub;

namespace PaliGemma.Cli;

/// <summary><c>paligemma pull OWNER/NAME</c>: download a checkpoint from the Hugging Face Hub and convert it.</summary>
internal static class PullCommand
{
    public static Command Build()
    {
        var repository = new Argument<string>("repository") { Description = "Hub model repository, e.g. google/paligemma2-3b-mix-224" };
        var options = HubCommandOptions.Create();
        var outType = new Option<string>("--outtype") { Description = "Text model type", DefaultValueFactory = _ => OutputType.F16.Name };
        var mmprojType = new Option<string>("--mmproj-type") { Description = "mmproj (vision) type", DefaultValueFactory = _ => OutputType.F16.Name };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show stack traces" };
        var command = new Command("pull", "Download a PaliGemma checkpoint from the Hugging Face Hub (resumable, checksum-verified) and convert it to GGUF")
        {
            repository, options.Revision, options.Token, options.CacheDir, outType, mmprojType, verbose,
        };
        command.SetAction(parsed => CommandRunner.Run(parsed.GetValue(verbose), cancellationToken =>
        {
            string text = parsed.GetValue(repository)!;
            var name = HubRepositoryName.TryParse(text) ?? throw new PaliGemmaException($"'{text}' is not a Hub repository name (OWNER/NAME)");
            var files = HubCommandOptions.Resolve(name, parsed, options, parsed.GetValue(outType)!, parsed.GetValue(mmprojType)!, alwaysAskHub: true, cancellationToken);
            Console.WriteLine(files.TextModelPath);
            Console.WriteLine(files.MmprojPath);
            return 0;
        }));
        return command;
    }
}

/// <summary>The Hub options <c>pull</c> and <c>run</c> share, and the one way both resolve a Hub name.</summary>
internal sealed record HubCommandOptions(Option<string> Revision, Option<string?> Token, Option<DirectoryInfo?> CacheDir)
{
    public static HubCommandOptions Create() => new(
        new Option<string>("--revision") { Description = "Branch, tag or commit of the Hub repository", DefaultValueFactory = _ => "main" },
        new Option<string?>("--token") { Description = "Hugging Face access token for gated repositories [default: HF_TOKEN, else the token huggingface-cli login saved]" },
        new Option<DirectoryInfo?>("--cache-dir") { Description = "Where pulled checkpoints and their GGUFs are kept [default: PALIGEMMA_CACHE, else ~/.cache/paligemma-gguf]" });

    public static ModelFiles Resolve(HubRepositoryName name, ParseResult parsed, HubCommandOptions options, string outType, string mmprojType, bool alwaysAskHub, CancellationToken cancellationToken)
    {
        var hub = new HubOptions();
        if (parsed.GetValue(options.Token) is { Length: > 0 } token)
        {
            hub = hub with { Token = token };
        }

        if (parsed.GetValue(options.CacheDir) is { } cache)
        {
            hub = hub with { CacheDirectory = cache.FullName };
        }

        var downloads = ConsoleDownloadProgress.ForStandardError();
        var conversion = new LazyConversionProgress(downloads);
        var files = ModelLocator.ResolveHubAsync(
            name,
            parsed.GetValue(options.Revision)!,
            hub,
            OutputType.Parse(outType, OutputType.TextTypes, "--outtype"),
            OutputType.Parse(mmprojType, OutputType.MmprojTypes, "--mmproj-type"),
            alwaysAskHub,
            downloads,
            conversion,
            cancellationToken).GetAwaiter().GetResult();
        downloads.Complete();
        conversion.Complete();
        return files;
    }

    /// <summary>Closes the last download's bar before the conversion's first line.</summary>
    private sealed class LazyConversionProgress(ConsoleDownloadProgress downloads) : IProgress<ConversionProgress>
    {
        private readonly ConsoleProgress _inner = ConsoleProgress.ForStandardError();

        public void Report(ConversionProgress value)
        {
            downloads.Complete();
            _inner.Report(value);
        }

        public void Complete() => _inner.Complete();
    }
}
