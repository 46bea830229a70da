using PaliGemma.Gguf.Checkpoints;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Checkpoints;

public sealed class SafetensorsDisposeTests
{
    [Fact]
    public void Reading_after_dispose_throws_instead_of_touching_the_unmapped_view()
    {
        string path = Path.Combine(GoldenData.RepositoryRoot, "tests", "fixtures", "golden", "models", "tiny-paligemma-224", "model-00001-of-00002.safetensors");
        var file = SafetensorsFile.Open(path);
        var tensor = file.Tensors.Values.First(t => t.ByteCount > 0);
        var buffer = new byte[Math.Min(tensor.ByteCount, 64)];
        file.ReadBytes(tensor, 0, buffer);

        file.Dispose();
        file.Dispose();

        Assert.Throws<ObjectDisposedException>(() => file.ReadBytes(tensor, 0, buffer));
    }
}
