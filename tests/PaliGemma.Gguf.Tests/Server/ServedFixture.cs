using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Server;
using Xunit;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// A real Kestrel server on 127.0.0.1 (a free port) over one of the test models, one per test class, and what the
/// model answers outside it: the reference every served answer is held to.
/// </summary>
public abstract class ServedFixture : IAsyncLifetime
{
    public PaliGemmaServer Server { get; private set; } = null!;

    public PaliGemmaModel Model { get; private set; } = null!;

    /// <summary>The converted files the model was loaded from.</summary>
    public abstract ConversionResult Files { get; }

    /// <summary>The options the server was started with.</summary>
    public abstract ServerOptions Options { get; }

    public Uri BaseAddress => Server.BaseAddress;

    public async Task InitializeAsync()
    {
        Model = LoadModel();
        Server = await PaliGemmaServer.StartAsync(Model, Options);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    /// <summary>
    /// A client that drops a connection when a response is disposed unread, as a closed browser tab does
    /// (by default HttpClient first drains up to 1 MB for two seconds to reuse the connection).
    /// </summary>
    public static HttpClient NewClient(Uri baseAddress) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(2) };

    /// <summary>What the model itself answers, greedily, outside the server.</summary>
    public GenerationResult Direct(string imagePath, string prompt, int maxTokens, Action<GeneratedToken>? onToken = null) =>
        Model.Generate(ImagePreprocessor.Load(imagePath, Model.ImageSize), prompt, new GenerationOptions { MaxNewTokens = maxTokens }, onToken);

    /// <summary>The model, loaded once the test class starts (shared with the other tests where it can be).</summary>
    protected abstract PaliGemmaModel LoadModel();
}
