using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using PaliGemma.Server;
using Xunit;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// A real Kestrel server on 127.0.0.1 (a free port) over the tiny golden model, one per test class.
/// The model is the shared F32 conversion the other tests load, so serving costs no extra load.
/// </summary>
public sealed class ServedModel : IAsyncLifetime
{
    public const string ApiKey = "test-key-7f3a";

    /// <summary>The golden model the server runs (its files are those <see cref="TestModels.Converted"/> made).</summary>
    public const string ModelName = "tiny-paligemma-224";

    public PaliGemmaServer Server { get; private set; } = null!;

    public PaliGemmaModel Model { get; private set; } = null!;

    public ConversionResult Files => TestModels.Converted(ModelName);

    public ServerOptions Options { get; } = new()
    {
        Port = 0,
        ApiKey = ApiKey,
        MaxRequestBodyBytes = 1 << 20,
        MaxTokensCap = 2000,
    };

    public Uri BaseAddress => Server.BaseAddress;

    public async Task InitializeAsync()
    {
        Model = TestModels.Load(ModelName, Precision.Exact);
        Server = await PaliGemmaServer.StartAsync(Model, Options);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public HttpClient Client(bool withKey = true)
    {
        var client = NewClient(BaseAddress);
        if (withKey)
        {
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", ApiKey);
        }

        return client;
    }

    /// <summary>
    /// A client that drops a connection when a response is disposed unread, as a closed browser tab does
    /// (by default HttpClient first drains up to 1 MB for two seconds to reuse the connection).
    /// </summary>
    public static HttpClient NewClient(Uri baseAddress) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(2) };

    /// <summary>What the model itself answers, greedily, outside the server: the reference every answer is held to.</summary>
    public GenerationResult Direct(string imagePath, string prompt, int maxTokens, Action<GeneratedToken>? onToken = null) =>
        Model.Generate(ImagePreprocessor.Load(imagePath, Model.ImageSize), prompt, new GenerationOptions { MaxNewTokens = maxTokens }, onToken);
}
