using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tasks;
using PaliGemma.Gguf.Tests.Infrastructure;
using PaliGemma.Server;
using Xunit;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// A real Kestrel server on 127.0.0.1 (a free port) over the trained tiny model (tests/fixtures/trained), whose
/// answers differ from picture to picture and prompt to prompt, with the segmentation fixture's decoder as its
/// --vae. No API key: the golden server's tests cover the key.
/// </summary>
public sealed class ServedTrainedModel : IAsyncLifetime
{
    public PaliGemmaServer Server { get; private set; } = null!;

    public PaliGemmaModel Model { get; private set; } = null!;

    public MaskDecoder Masks { get; } = MaskDecoder.Load(SegmentationGolden.VaePath);

    public ConversionResult Files => TestModels.ConvertedTrained();

    public Uri BaseAddress => Server.BaseAddress;

    public async Task InitializeAsync()
    {
        Model = TestModels.LoadTrained();
        Server = await PaliGemmaServer.StartAsync(Model, new ServerOptions { Port = 0, MaskDecoder = Masks, MaxRequestBodyBytes = 4 << 20 });
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public HttpClient Client() => ServedModel.NewClient(BaseAddress);

    /// <summary>What the library itself answers, greedily, outside the server.</summary>
    public GenerationResult Direct(string imagePath, string prompt, int maxTokens) =>
        Model.Generate(ImagePreprocessor.Load(imagePath, Model.ImageSize), prompt, new GenerationOptions { MaxNewTokens = maxTokens });

    /// <summary>The objects the library reads from that answer, in the picture's pixels, masks decoded.</summary>
    public IReadOnlyList<DetectedObject> DirectObjects(string imagePath, string prompt, int maxTokens, int width, int height) =>
        Masks.AddMasks(DetectionParser.Parse(Direct(imagePath, prompt, maxTokens).Text, width, height), width, height);
}
