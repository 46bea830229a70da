using CsCheck;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// Broken copies of every picture of the decoding reference set, through the path <c>paligemma run</c> takes
/// (structure checks, libjpeg-turbo or ImageSharp, orientation, resize): a picture or a one-line
/// <see cref="PaliGemmaException"/> naming the file, never another exception, a native crash, a hang or a large allocation.
/// </summary>
public sealed class PictureFuzzTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>Far above every reference picture (at most 60 000 pixels), low enough that a mutated header claiming a
    /// bigger picture is refused before decoding instead of tripping the allocation guard.</summary>
    private const long PixelBudget = 1_000_000;

    private static readonly Lazy<(string Extension, byte[] Bytes)[]> Pictures = new(() =>
        DecodeGolden.Cases.Select(c => (Path.GetExtension(c.Path), File.ReadAllBytes(c.Path))).ToArray());

    private readonly ScratchFolder _scratch = new("picture");

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Mutated_pictures_decode_or_are_refused_with_a_PaliGemmaException_naming_the_file()
    {
        var pictures = Pictures.Value;
        // The first bytes hold the signature and the header, where most decisions are made: edit them more often.
        Gen.Select(Gen.Int[0, pictures.Length - 1], ByteEdit.Any.Array[1, 3], Gen.Int[0, 1]).Sample(
            (index, edits, headerOnly) =>
            {
                var (extension, original) = pictures[index];
                byte[] bytes = original;
                foreach (var edit in edits)
                {
                    bytes = edit.Apply(bytes, 0, headerOnly == 1 ? 64 : bytes.Length);
                }

                string path = _scratch.NewFile(extension);
                File.WriteAllBytes(path, bytes);
                try
                {
                    return Fuzz.Expect(path, () => ImagePreprocessor.Load(path, 224, PixelBudget));
                }
                finally
                {
                    ScratchFolder.TryDelete(path);
                }
            },
            output.WriteLine,
            iter: Fuzz.Iterations(1000));
    }

    public void Dispose() => _scratch.Dispose();
}
