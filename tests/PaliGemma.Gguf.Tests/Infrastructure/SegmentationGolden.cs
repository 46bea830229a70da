using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;
using Xunit;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// The segmentation reference set (see tests/fixtures/segmentation/README.md): the folder named by
/// PALIGEMMA_SEGMENTATION_GOLDEN, or the copy kept in the repository.
/// </summary>
public static class SegmentationGolden
{
    private static readonly Lazy<Manifest> Loaded = new(Load);

    public static string Folder => Loaded.Value.Folder;

    public static string VaePath => Path.Combine(Folder, Loaded.Value.Vae);

    public static double Mask64Tolerance => Loaded.Value.Mask64Tolerance;

    public static double BorderlineDistance => Loaded.Value.BorderlineDistance;

    public static IReadOnlyList<string> DecoderKeys => Loaded.Value.DecoderKeys;

    public static IReadOnlyList<string> IgnoredKeys => Loaded.Value.IgnoredKeys;

    public static IReadOnlyList<DecodeCase> DecodeCases => Loaded.Value.DecodeCases;

    public static IReadOnlyList<AnswerCase> AnswerCases => Loaded.Value.AnswerCases;

    public static DecodeCase Decode(string key) => DecodeCases.Single(c => c.Key == key);

    public static AnswerCase Answer(string key) => AnswerCases.Single(c => c.Key == key);

    public static float[] Float32(string name)
    {
        byte[] bytes = Bytes(name, TensorDType.F32);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }

    public static byte[] UInt8(string name) => Bytes(name, TensorDType.U8);

    /// <summary>The answer cases' keys, for [MemberData].</summary>
    public static TheoryData<string> AnswerKeys() => new(AnswerCases.Select(c => c.Key));

    /// <summary>A black PNG of the answer's picture size at <paramref name="path"/> (the answers' boxes are in its pixels).</summary>
    public static string BlankPicture(string path, AnswerCase answer)
    {
        using var image = new SixLabors.ImageSharp.Image<SixLabors.ImageSharp.PixelFormats.Rgb24>(answer.Width, answer.Height);
        SixLabors.ImageSharp.ImageExtensions.SaveAsPng(image, path);
        return path;
    }

    /// <summary>An answer object's reference 8-bit box mask placed in a picture of the answer's size (0 outside the box).</summary>
    public static byte[] PlacedBoxMask(AnswerCase answer, AnswerObject found)
    {
        byte[] boxMask = UInt8($"answer/{answer.Key}/{found.Index}/box_mask_u8");
        var picture = new byte[answer.Width * answer.Height];
        int boxWidth = found.Box[2] - found.Box[0];
        for (int row = 0; row < found.Box[3] - found.Box[1]; row++)
        {
            boxMask.AsSpan(row * boxWidth, boxWidth).CopyTo(picture.AsSpan(((found.Box[1] + row) * answer.Width) + found.Box[0]));
        }

        return picture;
    }

    private static byte[] Bytes(string name, TensorDType dtype)
    {
        using var file = SafetensorsFile.Open(Path.Combine(Folder, Loaded.Value.Tensors));
        if (!file.Tensors.TryGetValue(name, out var tensor))
        {
            throw new KeyNotFoundException($"the segmentation tensors have no '{name}'");
        }

        Assert.Equal(dtype, tensor.DType);
        var bytes = new byte[tensor.ByteCount];
        file.ReadBytes(tensor, 0, bytes);
        return bytes;
    }

    private static Manifest Load()
    {
        string folder = Environment.GetEnvironmentVariable("PALIGEMMA_SEGMENTATION_GOLDEN") is { Length: > 0 } env
            ? env
            : Path.Combine(GoldenData.RepositoryRoot, "tests", "fixtures", "segmentation");
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "segmentation.json")));
        var root = document.RootElement;
        Assert.Equal("paligemma-segmentation-reference/1", root.GetProperty("format").GetString());
        var tolerances = root.GetProperty("tolerances");
        var decodeCases = root.GetProperty("decode_cases").EnumerateArray().Select(c => new DecodeCase(
            c.GetProperty("key").GetString()!,
            Ints(c.GetProperty("codes")),
            c.GetProperty("mask64_positive_pixels").GetInt32(),
            c.GetProperty("mask64_u8_pixels_ge_128").GetInt32(),
            c.GetProperty("borderline_pixels").GetInt32())).ToList();
        var answerCases = root.GetProperty("answer_cases").EnumerateArray().Select(c => new AnswerCase(
            c.GetProperty("key").GetString()!,
            c.GetProperty("width").GetInt32(),
            c.GetProperty("height").GetInt32(),
            c.GetProperty("answer").GetString()!,
            c.GetProperty("objects").EnumerateArray().Select(o => new AnswerObject(
                o.GetProperty("index").GetInt32(),
                o.GetProperty("label").GetString()!,
                Ints(o.GetProperty("box")),
                Ints(o.GetProperty("bins")),
                o.GetProperty("codes").ValueKind == JsonValueKind.Null ? null : Ints(o.GetProperty("codes")),
                o.GetProperty("decode_key").ValueKind == JsonValueKind.Null ? null : o.GetProperty("decode_key").GetString(),
                o.GetProperty("valid").GetBoolean(),
                o.GetProperty("has_mask").GetBoolean(),
                o.GetProperty("mask_pixels").ValueKind == JsonValueKind.Null ? null : o.GetProperty("mask_pixels").GetInt32())).ToList(),
            c.GetProperty("leftovers").EnumerateArray().Select(l => l.GetString()!).ToList())).ToList();
        return new Manifest(
            folder,
            root.GetProperty("vae").GetString()!,
            root.GetProperty("tensors").GetString()!,
            tolerances.GetProperty("mask64_abs").GetDouble(),
            tolerances.GetProperty("borderline_distance").GetDouble(),
            root.GetProperty("decoder_keys").EnumerateArray().Select(k => k.GetString()!).ToList(),
            root.GetProperty("ignored_keys").EnumerateArray().Select(k => k.GetString()!).ToList(),
            decodeCases,
            answerCases);
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private sealed record Manifest(
        string Folder,
        string Vae,
        string Tensors,
        double Mask64Tolerance,
        double BorderlineDistance,
        List<string> DecoderKeys,
        List<string> IgnoredKeys,
        List<DecodeCase> DecodeCases,
        List<AnswerCase> AnswerCases);
}

public sealed record DecodeCase(string Key, int[] Codes, int PositivePixels, int EightBitObjectPixels, int BorderlinePixels)
{
    public override string ToString() => Key;
}

public sealed record AnswerCase(string Key, int Width, int Height, string Answer, IReadOnlyList<AnswerObject> Objects, IReadOnlyList<string> Leftovers)
{
    public override string ToString() => Key;
}

public sealed record AnswerObject(int Index, string Label, int[] Box, int[] Bins, int[]? Codes, string? DecodeKey, bool Valid, bool HasMask, int? MaskPixels);
