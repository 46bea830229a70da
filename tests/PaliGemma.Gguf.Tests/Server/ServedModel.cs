using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using PaliGemma.Server;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// The server over the tiny golden model, with an API key. The model is the shared F32 conversion the other tests
/// load, so serving costs no extra load.
/// </summary>
public sealed class ServedModel : ServedFixture
{
    public const string ApiKey = "test-key-7f3a";

    /// <summary>The golden model the server runs (its files are those <see cref="TestModels.Converted"/> made).</summary>
    public const string ModelName = "tiny-paligemma-224";

    public override ConversionResult Files => TestModels.Converted(ModelName);

    public override ServerOptions Options { get; } = new()
    {
        Port = 0,
        ApiKey = ApiKey,
        MaxRequestBodyBytes = 1 << 20,
        MaxTokensCap = 2000,
    };

    public HttpClient Client(bool withKey = true)
    {
        var client = NewClient(BaseAddress);
        if (withKey)
        {
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", ApiKey);
        }

        return client;
    }

    protected override PaliGemmaModel LoadModel() => TestModels.Load(ModelName, Precision.Exact);
}
