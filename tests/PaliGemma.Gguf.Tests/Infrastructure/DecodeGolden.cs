using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// The decoding reference set (see tests/fixtures/decode/README.md): picture files and the RGB bytes Pillow gives
/// for each, in the folder named by PALIGEMMA_DECODE_GOLDEN or the copy kept in the repository.
/// </summary>
public static class DecodeGolden
{
    private static readonly Lazy<(string Folder, IReadOnlyList<PictureCase> Cases)> Loaded = new(Load);

    public static string Folder => Loaded.Value.Folder;

    public static IReadOnlyList<PictureCase> Cases => Loaded.Value.Cases;

    public static PictureCase Case(string name) => Cases.Single(c => c.Name == name);

    /// <summary>The expected bytes of one case: height x width x 3, after the EXIF transpose.</summary>
    public static byte[] ExpectedRgb(PictureCase c)
    {
        using var file = SafetensorsFile.Open(Path.Combine(Folder, "decode.safetensors"));
        var tensor = file.Tensors[$"rgb/{c.Name}"];
        if (tensor.DType != TensorDType.U8 || !tensor.Shape.SequenceEqual([c.ExpectedHeight, c.ExpectedWidth, 3L]))
        {
            throw new InvalidDataException($"rgb/{c.Name} is {tensor.DType} {tensor.ShapeText}, the manifest says U8 [{c.ExpectedHeight}, {c.ExpectedWidth}, 3]");
        }

        var bytes = new byte[tensor.ByteCount];
        file.ReadBytes(tensor, 0, bytes);
        return bytes;
    }

    private static (string, IReadOnlyList<PictureCase>) Load()
    {
        string folder = Environment.GetEnvironmentVariable("PALIGEMMA_DECODE_GOLDEN") is { Length: > 0 } env
            ? env
            : Path.Combine(GoldenData.RepositoryRoot, "tests", "fixtures", "decode");
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "decode.json")));
        var cases = document.RootElement.GetProperty("cases").EnumerateArray().Select(c => new PictureCase(
            c.GetProperty("name").GetString()!,
            Path.Combine(folder, c.GetProperty("file").GetString()!),
            c.GetProperty("format").GetString()!,
            c.GetProperty("mode").GetString()!,
            c.GetProperty("exif_orientation").ValueKind == JsonValueKind.Null ? null : c.GetProperty("exif_orientation").GetInt32(),
            c.GetProperty("expected_size")[0].GetInt32(),
            c.GetProperty("expected_size")[1].GetInt32(),
            c.GetProperty("expected_sha256").GetString()!,
            c.GetProperty("file_sha256").GetString()!,
            c.GetProperty("note").GetString()!)).ToList();
        return (folder, cases);
    }
}

/// <summary>One picture of the decoding reference set.</summary>
public sealed record PictureCase(
    string Name,
    string Path,
    string Format,
    string Mode,
    int? ExifOrientation,
    int ExpectedWidth,
    int ExpectedHeight,
    string ExpectedSha256,
    string FileSha256,
    string Note);
