using System.CommandLine;
using PaliGemma.Cli.Shared;
using PaliGemma.Gguf;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Server;

namespace PaliGemma.Cli;

/// <summary><c>paligemma serve</c>: load the model once and answer HTTP requests (see PaliGemma.Server).</summary>
internal static class ServeCommand
{
    public const string ApiKeyVariable = "PALIGEMMA_API_KEY";

    public static Command Build()
    {
        var defaults = new ServerOptions();
        var common = GenerationCommandOptions.ForServing();
        var host = new Option<string>("--host") { Description = "Address to listen on; 0.0.0.0 opens it to the network", DefaultValueFactory = _ => defaults.Host };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port, printed at start)", DefaultValueFactory = _ => defaults.Port };
        var apiKey = new Option<string?>("--api-key") { Description = $"Require Authorization: Bearer KEY on every endpoint but /health and the page (or set {ApiKeyVariable}, which ps does not show)" };
        var vae = new Option<FileInfo?>("--vae") { Description = "big_vision's segmentation VQ-VAE (vae-oid.npz): segment answers come with their masks" };
        var maxTokens = new Option<int>("--max-tokens-cap") { Description = "Most tokens one request may ask for", DefaultValueFactory = _ => defaults.MaxTokensCap };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests that may wait for the model; more get 429", DefaultValueFactory = _ => defaults.MaxQueuedRequests };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body", DefaultValueFactory = _ => defaults.MaxRequestBodyBytes };
        var maxPixels = new Option<long>("--max-image-pixels") { Description = "Pictures declaring more pixels are refused before decoding", DefaultValueFactory = _ => defaults.MaxImagePixels };

        var command = new Command("serve", "Serve the model over HTTP: OpenAI-compatible chat completions, a native endpoint, metrics and a web page")
        {
            host, port, apiKey, vae, maxTokens, maxQueue, maxBody, maxPixels,
        };
        common.AddTo(command);

        command.SetAction(parsed => CommandRunner.Run(common.IsVerbose(parsed), cancellationToken =>
        {
            bool isVerbose = common.IsVerbose(parsed);
            // The VAE loads first: a wrong file fails before the model's load.
            var maskDecoder = parsed.GetValue(vae) is { } vaeFile ? MaskDecoder.Load(vaeFile.FullName) : null;
            var options = new ServerOptions
            {
                Host = parsed.GetValue(host)!,
                Port = parsed.GetValue(port),
                ApiKey = parsed.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable(ApiKeyVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : null),
                MaxTokensCap = parsed.GetValue(maxTokens),
                MaxQueuedRequests = parsed.GetValue(maxQueue),
                MaxRequestBodyBytes = parsed.GetValue(maxBody),
                MaxImagePixels = parsed.GetValue(maxPixels),
                MaskDecoder = maskDecoder,
                ErrorLog = line => Console.Error.WriteLine(isVerbose ? $"error: {line}" : $"error: {line.ReplaceLineEndings(" ").Split("   at ")[0]}"),
            };
            var files = common.ResolveModel(parsed, cancellationToken);
            Console.Error.WriteLine($"loading {Path.GetFileName(files.TextModelPath)} + {Path.GetFileName(files.MmprojPath)}");
            using var loaded = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, common.ReadModelOptions(parsed) with
            {
                MaxImagePixels = options.MaxImagePixels,
                LoadProgress = new LoadingProgress(Console.Error, !Console.IsErrorRedirected),
            });

            var server = PaliGemmaServer.StartAsync(loaded, options, cancellationToken).GetAwaiter().GetResult();
            try
            {
                Console.Error.WriteLine($"listening on {server.BaseAddress} ({(options.ApiKey is null ? "no API key" : "API key required")}); Ctrl+C stops");
                server.WaitForShutdownAsync(cancellationToken).GetAwaiter().GetResult();
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }

            Console.Error.WriteLine("stopped");
            return 0;
        }));
        return command;
    }
}
