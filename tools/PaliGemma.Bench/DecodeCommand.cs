using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using PaliGemma.Gguf.Inference;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.PixelFormats;

namespace PaliGemma.Bench;

/// <summary>
/// <c>paligemma-bench decode</c>: what decoding a 12-megapixel JPEG and resizing it to the model's size costs
/// through the product's path (libjpeg-turbo, EXIF orientation, Pillow's bicubic) against the previous path
/// (ImageSharp's JPEG decoder, the same resize), paired: A B A B..., medians of each and of the per-pair ratios.
/// </summary>
internal static class DecodeCommand
{
    public static Command Build()
    {
        var runs = new Option<int>("--runs") { Description = "Pairs of runs per size (medians are reported)", DefaultValueFactory = _ => 7 };
        var file = new Option<FileInfo?>("--jpeg") { Description = "JPEG to decode (default: a generated 4000 x 3000, quality 90, 4:2:0 picture)" };
        var command = new Command("decode", "Time JPEG decode + resize: the product's decoder against ImageSharp's, paired") { runs, file };
        command.SetAction(parsed =>
        {
            Run(parsed.GetValue(file)?.FullName, parsed.GetValue(runs));
            return 0;
        });
        return command;
    }

    private static void Run(string? path, int runs)
    {
        string jpeg = path ?? Path.Combine(Path.GetTempPath(), "paligemma-bench-12mp.jpg");
        if (path is null)
        {
            File.WriteAllBytes(jpeg, GeneratedJpeg(4000, 3000));
        }

        var info = Image.Identify(jpeg);
        Console.WriteLine($"{Path.GetFileName(jpeg)}: {info.Width} x {info.Height}, {new FileInfo(jpeg).Length / 1e6:F1} MB; {runs} pairs per size, A (product) then B (ImageSharp) in turn, {Environment.ProcessorCount} cores");
        Console.WriteLine();
        Console.WriteLine("| size | product (libjpeg-turbo) median | ImageSharp median | product / ImageSharp, median of pair ratios |");
        Console.WriteLine("|---|---|---|---|");
        foreach (int size in new[] { 224, 896 })
        {
            // One unmeasured pair warms both paths (JIT, Skia's native library, ImageSharp's pools).
            Product(jpeg, size);
            ImageSharpPath(jpeg, size);
            var a = new List<double>();
            var b = new List<double>();
            for (int i = 0; i < runs; i++)
            {
                a.Add(Time(() => Product(jpeg, size)));
                b.Add(Time(() => ImageSharpPath(jpeg, size)));
            }

            var ratios = a.Zip(b, (x, y) => x / y).ToList();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {size} | {Median(a):F0} ms | {Median(b):F0} ms | {Median(ratios):F2} |"));
        }
    }

    private static byte[] Product(string jpeg, int size) => ImagePreprocessor.Load(jpeg, size).Rgb;

    private static byte[] ImageSharpPath(string jpeg, int size)
    {
        using var image = Image.Load<Rgb24>(jpeg);
        var rgb = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(rgb);
        return PillowBicubic.Resize(rgb, image.Width, image.Height, size, size);
    }

    private static double Time(Func<byte[]> action)
    {
        GC.Collect();
        var watch = Stopwatch.StartNew();
        GC.KeepAlive(action());
        return watch.Elapsed.TotalMilliseconds;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    /// <summary>A photo-like picture made the same way every time: smooth gradients, hard-edged tiles and fine noise.</summary>
    private static byte[] GeneratedJpeg(int width, int height)
    {
        using var image = new Image<Rgb24>(width, height);
        uint state = 12345;
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < height; y++)
            {
                var row = rows.GetRowSpan(y);
                for (int x = 0; x < width; x++)
                {
                    state = state * 1664525 + 1013904223;
                    int noise = (int)(state >> 28) - 8;
                    double fx = x / (double)width;
                    double fy = y / (double)height;
                    int r = (int)(128 + 100 * Math.Sin(fx * 17 + fy * 5)) + noise;
                    int g = (int)(128 + 100 * Math.Cos(fy * 23 - fx * 3)) + noise;
                    int b = ((x / 200 + y / 150) % 2 == 0 ? 200 : 40) + noise;
                    row[x] = new Rgb24((byte)Math.Clamp(r, 0, 255), (byte)Math.Clamp(g, 0, 255), (byte)Math.Clamp(b, 0, 255));
                }
            }
        });
        using var stream = new MemoryStream();
        image.Save(stream, new JpegEncoder { Quality = 90, ColorType = JpegColorType.YCbCrRatio420 });
        return stream.ToArray();
    }
}
