using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tasks;
using PaliGemma.Gguf.Tests.Infrastructure;
using PaliGemma.Server;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// The server over the trained tiny model (tests/fixtures/trained), whose answers differ from picture to picture and
/// prompt to prompt, with the segmentation fixture's decoder as its --vae. No API key: the golden server's tests
/// cover the key.
/// </summary>
public sealed class ServedTrainedModel : ServedFixture
{
    public ServedTrainedModel()
    {
        Options = new ServerOptions { Port = 0, MaskDecoder = Masks, MaxRequestBodyBytes = 4 << 20 };
    }

    public MaskDecoder Masks { get; } = MaskDecoder.Load(SegmentationGolden.VaePath);

    public override ConversionResult Files => TestModels.ConvertedTrained();

    public override ServerOptions Options { get; }

    public HttpClient Client() => NewClient(BaseAddress);

    /// <summary>The objects the library reads from that answer, in the picture's pixels, masks decoded.</summary>
    public IReadOnlyList<DetectedObject> DirectObjects(string imagePath, string prompt, int maxTokens, int width, int height) =>
        Masks.AddMasks(DetectionParser.Parse(Direct(imagePath, prompt, maxTokens).Text, width, height), width, height);

    protected override PaliGemmaModel LoadModel() => TestModels.LoadTrained();
}
