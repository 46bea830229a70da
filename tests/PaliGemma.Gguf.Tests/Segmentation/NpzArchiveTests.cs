using System.IO.Compression;
using System.Text;
using PaliGemma.Gguf.Segmentation;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Segmentation;

/// <summary>
/// The .npz reader on the reference decoder repacked in the ways numpy writes files (stored, other dtypes, Fortran
/// order) and broken in the ways files break; every bad file gets one line naming the file and the key.
/// </summary>
public sealed class NpzArchiveTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("paligemma-npz-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void UnusedKeysOfAnyDtypeAreIgnored()
    {
        using (var archive = NpzArchive.Open(SegmentationGolden.VaePath))
        {
            // The reference file does hold them (an int64 0-d array among them), so loading below proves they are skipped.
            Assert.All(SegmentationGolden.IgnoredKeys, key => Assert.Contains(key, archive.Keys));
        }

        Assert.Equal(SegmentationGolden.DecoderKeys.Order(StringComparer.Ordinal), MaskDecoder.Keys.Order(StringComparer.Ordinal));
        MaskDecoder.Load(SegmentationGolden.VaePath);
    }

    [Fact]
    public void StoredEntriesDecodeLikeDeflatedOnes()
    {
        string stored = Repack("stored.npz", CompressionLevel.NoCompression, _ => { });
        AssertSameMasks(stored);
    }

    [Fact]
    public void FloatWidthsByteOrdersAndFortranOrderAreConverted()
    {
        // float32 -> float64 and back is exact, so the masks must be identical, not merely close.
        string path = Repack("converted.npz", CompressionLevel.Optimal, entries =>
        {
            entries["decoder.4.weight.npy"] = Reencode(entries["decoder.4.weight.npy"], "<f8", fortran: true);
            entries["decoder.6.weight.npy"] = Reencode(entries["decoder.6.weight.npy"], ">f4", fortran: false);
            entries["decoder.0.bias.npy"] = Reencode(entries["decoder.0.bias.npy"], "<f8", fortran: false);
        });
        AssertSameMasks(path);
    }

    [Fact]
    public void HalfPrecisionArraysAreRead()
    {
        string path = WriteNpz("half.npz", ("x", Npy("<f2", false, [2, 2], [0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0x00, 0x00])));
        using var archive = NpzArchive.Open(path);
        var (values, shape) = archive.ReadFloat32("x");
        Assert.Equal([2, 2], shape);
        Assert.Equal([1f, -2f, 0.5f, 0f], values);
    }

    [Fact]
    public void FortranOrderIsReorderedToRowMajor()
    {
        // Column-major 2 x 3: memory 1 4 2 5 3 6 is the matrix [[1, 2, 3], [4, 5, 6]].
        byte[] data = new[] { 1f, 4f, 2f, 5f, 3f, 6f }.SelectMany(BitConverter.GetBytes).ToArray();
        string path = WriteNpz("fortran.npz", ("m", Npy("<f4", true, [2, 3], data)));
        using var archive = NpzArchive.Open(path);
        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], archive.ReadFloat32("m").Values);
    }

    public static TheoryData<string, string> BrokenFiles() => new()
    {
        { "missing-key", "key 'decoder.6.bias' is missing" },
        { "wrong-shape", "key 'decoder.8.weight' has shape (32, 64, 4, 4), expected (64, 32, 4, 4)" },
        { "wrong-dtype", "key 'decoder.12.bias' has dtype '<i4', expected a floating-point array" },
        { "lying-header", "key 'decoder.10.bias' has a header saying dtype '<f4' shape (17)" },
        { "not-npy", "key 'decoder.2.net.0.bias' is not a NumPy .npy array" },
        { "bad-header", "key 'decoder.3.net.4.bias' has a .npy header that is not a Python dict literal" },
        { "truncated-file", "truncated" },
        { "damaged-entry", "key '_vq_vae._embedding' " },
        { "not-a-zip", "not a complete NumPy .npz file (a ZIP archive" },
    };

    [Theory]
    [MemberData(nameof(BrokenFiles))]
    public void BrokenFilesGetOneLineNamingTheFileAndKey(string kind, string expected)
    {
        string path = kind switch
        {
            "missing-key" => Repack(kind, CompressionLevel.Optimal, e => e.Remove("decoder.6.bias.npy")),
            "wrong-shape" => Repack(kind, CompressionLevel.Optimal, e => e["decoder.8.weight.npy"] = Reshape(e["decoder.8.weight.npy"], "(32, 64, 4, 4)")),
            "wrong-dtype" => Repack(kind, CompressionLevel.Optimal, e => e["decoder.12.bias.npy"] = Npy("<i4", false, [1], [1, 0, 0, 0])),
            "lying-header" => Repack(kind, CompressionLevel.Optimal, e => e["decoder.10.bias.npy"] = Reshape(e["decoder.10.bias.npy"], "(17,)")),
            "not-npy" => Repack(kind, CompressionLevel.Optimal, e => e["decoder.2.net.0.bias.npy"] = Encoding.ASCII.GetBytes("not an array")),
            "bad-header" => Repack(kind, CompressionLevel.Optimal, e => e["decoder.3.net.4.bias.npy"] = ReplaceHeader(e["decoder.3.net.4.bias.npy"], "{'descr': '<f4', 'fortran_order': False, 'shape': [128], }")),
            "truncated-file" => Truncate(SegmentationGolden.VaePath, 0.6),
            "damaged-entry" => Damage(Repack(kind, CompressionLevel.Optimal, e => { }), "_vq_vae._embedding.npy"),
            _ => Write(kind, Encoding.ASCII.GetBytes("PK this is not a zip file at all")),
        };

        var error = Assert.Throws<PaliGemmaException>(() => MaskDecoder.Load(path));
        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
        output.WriteLine(error.Message);
    }

    private void AssertSameMasks(string path)
    {
        var reference = MaskDecoder.Load(SegmentationGolden.VaePath);
        var other = MaskDecoder.Load(path);
        foreach (DecodeCase decode in SegmentationGolden.DecodeCases)
        {
            Assert.Equal(reference.Decode(decode.Codes), other.Decode(decode.Codes));
        }
    }

    /// <summary>The reference decoder's entries (decompressed), edited, written as a new .npz.</summary>
    private string Repack(string name, CompressionLevel level, Action<Dictionary<string, byte[]>> edit)
    {
        var entries = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        using (var zip = ZipFile.OpenRead(SegmentationGolden.VaePath))
        {
            foreach (var entry in zip.Entries)
            {
                using var stream = entry.Open();
                using var copy = new MemoryStream();
                stream.CopyTo(copy);
                entries[entry.FullName] = copy.ToArray();
            }
        }

        edit(entries);
        string path = Path.Combine(_folder, name);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            foreach (var (entryName, bytes) in entries)
            {
                using var stream = zip.CreateEntry(entryName, level).Open();
                stream.Write(bytes);
            }
        }

        return path;
    }

    private string WriteNpz(string name, params (string Key, byte[] Npy)[] arrays)
    {
        string path = Path.Combine(_folder, name);
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (key, npy) in arrays)
        {
            using var stream = zip.CreateEntry(key + ".npy").Open();
            stream.Write(npy);
        }

        return path;
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>Overwrites the middle of one entry's compressed data, leaving the ZIP directory intact.</summary>
    private static string Damage(string path, string entryName)
    {
        long offset;
        long length;
        using (var zip = ZipFile.OpenRead(path))
        {
            var entry = zip.GetEntry(entryName)!;
            length = entry.CompressedLength;
        }

        byte[] bytes = File.ReadAllBytes(path);
        byte[] name = Encoding.ASCII.GetBytes(entryName);
        // The local header: 30 fixed bytes, the name, then an extra field whose length is at offset 28.
        int local = bytes.AsSpan().IndexOf(name) - 30;
        offset = local + 30 + name.Length + BitConverter.ToUInt16(bytes, local + 28);
        bytes.AsSpan((int)(offset + (length / 2)), 64).Fill(0xFF);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string Truncate(string source, double fraction)
    {
        byte[] bytes = File.ReadAllBytes(source);
        return Write("truncated.npz", bytes[..(int)(bytes.Length * fraction)]);
    }

    /// <summary>A version 1.0 .npy: magic, version, header length, the dict padded with spaces to a multiple of 64, data.</summary>
    private static byte[] Npy(string descr, bool fortran, int[] shape, byte[] data)
    {
        string tuple = shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";
        return NpyWithHeader($"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': {tuple}, }}", data);
    }

    private static byte[] NpyWithHeader(string dict, byte[] data)
    {
        int unpadded = 10 + dict.Length + 1;
        string header = dict + new string(' ', (64 - (unpadded % 64)) % 64) + "\n";
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 };
        bytes.AddRange(BitConverter.GetBytes((ushort)header.Length));
        bytes.AddRange(Encoding.ASCII.GetBytes(header));
        bytes.AddRange(data);
        return [.. bytes];
    }

    private static (string Dict, byte[] Data) Split(byte[] npy)
    {
        int length = BitConverter.ToUInt16(npy, 8);
        return (Encoding.ASCII.GetString(npy, 10, length).Trim(), npy[(10 + length)..]);
    }

    private static byte[] ReplaceHeader(byte[] npy, string dict) => NpyWithHeader(dict, Split(npy).Data);

    private static byte[] Reshape(byte[] npy, string shape)
    {
        var (dict, data) = Split(npy);
        int start = dict.IndexOf("'shape': ", StringComparison.Ordinal) + "'shape': ".Length;
        int end = dict.IndexOf(')', start) + 1;
        return NpyWithHeader(dict[..start] + shape + dict[end..], data);
    }

    /// <summary>The little-endian float32 C-order array re-encoded as another float dtype and order.</summary>
    private static byte[] Reencode(byte[] npy, string descr, bool fortran)
    {
        var (dict, data) = Split(npy);
        int start = dict.IndexOf("'shape': (", StringComparison.Ordinal) + "'shape': (".Length;
        int[] shape = dict[start..dict.IndexOf(')', start)].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        float[] values = new float[data.Length / 4];
        Buffer.BlockCopy(data, 0, values, 0, data.Length);
        if (fortran)
        {
            values = ToFortran(values, shape);
        }

        byte[] encoded = descr switch
        {
            "<f8" => values.SelectMany(v => BitConverter.GetBytes((double)v)).ToArray(),
            ">f4" => values.SelectMany(v => BitConverter.GetBytes(v).Reverse()).ToArray(),
            _ => throw new ArgumentException(descr),
        };
        return Npy(descr, fortran, shape, encoded);
    }

    private static float[] ToFortran(float[] c, int[] shape)
    {
        var fortran = new float[c.Length];
        var index = new int[shape.Length];
        for (int flat = 0; flat < c.Length; flat++)
        {
            int offset = 0;
            int stride = 1;
            for (int d = 0; d < shape.Length; d++)
            {
                offset += index[d] * stride;
                stride *= shape[d];
            }

            fortran[offset] = c[flat];
            for (int d = shape.Length - 1; d >= 0 && ++index[d] == shape[d]; d--)
            {
                index[d] = 0;
            }
        }

        return fortran;
    }
}
