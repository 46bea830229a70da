using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using PaliGemma.Bench.Measurement;
using PaliGemma.Gguf.Inference;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace PaliGemma.Bench;

/// <summary>
/// <c>paligemma-bench engine</c>: what the long-lived engine gains over one request at a time, on real-shape
/// files (random weights: the work is the same): a batch job against the bare engine answering the same
/// requests one by one with the model loaded once; several prompts on one picture against single requests;
/// decode throughput with 1, 2 and 4 sequences in flight. Every comparison alternates its arms run by run and
/// reports the median of the per-round ratios. Prints a Markdown report.
/// </summary>
internal static class EngineCommand
{
    private static readonly string[] FourPrompts = ["caption en", "detect cat", "answer en what is in the image?", "ocr"];

    public static Command Build()
    {
        var work = new Option<DirectoryInfo>("--work") { Description = "Folder of paligemma-bench run's GGUFs; the pictures are written here", DefaultValueFactory = _ => new DirectoryInfo(Path.Combine(Path.GetTempPath(), "paligemma-bench")) };
        var text = new Option<FileInfo?>("--model") { Description = "Text GGUF [default: WORK/gguf-bf16/paligemma-3b-pt-224-bf16.q4_k_m.gguf]" };
        var mmproj = new Option<FileInfo?>("--mmproj") { Description = "mmproj GGUF [default: WORK/gguf-bf16/paligemma-3b-pt-224-bf16.mmproj.q8_0.gguf]" };
        var runs = new Option<int>("--runs") { Description = "Rounds of the in-process comparisons", DefaultValueFactory = _ => 3 };
        var batchRuns = new Option<int>("--batch-runs") { Description = "Pairs of whole batch jobs (each pair takes minutes)", DefaultValueFactory = _ => 2 };
        var pictures = new Option<int>("--pictures") { Description = "Pictures in the batch job (2 prompts each)", DefaultValueFactory = _ => 16 };
        var threads = new Option<int>("--threads") { Description = "Threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var sequences = new Option<int>("--sequences") { Description = "--sequences of the product's batch job", DefaultValueFactory = _ => new ModelOptions().BatchSequences };
        var command = new Command("engine", "Benchmark the engine (batch throughput, prompts per picture, sequences in flight) and print a Markdown report")
        {
            work, text, mmproj, runs, batchRuns, pictures, threads, sequences,
        };
        command.SetAction(parsed =>
        {
            string folder = parsed.GetValue(work)!.FullName;
            string textModel = parsed.GetValue(text)?.FullName ?? Path.Combine(folder, "gguf-bf16", "paligemma-3b-pt-224-bf16.q4_k_m.gguf");
            string mmprojModel = parsed.GetValue(mmproj)?.FullName ?? Path.Combine(folder, "gguf-bf16", "paligemma-3b-pt-224-bf16.mmproj.q8_0.gguf");
            Run(folder, textModel, mmprojModel, parsed.GetValue(runs), parsed.GetValue(batchRuns), parsed.GetValue(pictures), parsed.GetValue(threads), parsed.GetValue(sequences));
            return 0;
        });
        return command;
    }

    private static void Run(string work, string textModel, string mmproj, int runs, int batchRuns, int pictureCount, int threads, int sequences)
    {
        string t = threads.ToString(CultureInfo.InvariantCulture);
        string names = $"{Path.GetFileName(textModel)} + {Path.GetFileName(mmproj)}";
        Console.WriteLine($"Files: {names}; {threads} threads; load average at the start: {LoadAverage()}.");
        Console.WriteLine();

        // In-process comparisons first: one model, loaded once.
        string[] batchPrompts = ["caption en", "detect cat"];
        int[] textRows;
        using (var model = PaliGemmaModel.Load(textModel, mmproj, new ModelOptions { Threads = threads }))
        {
            // The bare engine's prefixes get the product's text rows (BOS, prompt, "\n").
            textRows = [.. batchPrompts.Select(p => model.TokenizePrompt(p).Length)];
            string picture = Pictures(work, 1)[0];
            var embedding = model.EmbedImageAsync(picture).GetAwaiter().GetResult();
            SequencesInFlight(model, embedding, runs);
            PromptsOnOnePicture(model, picture, runs);
        }

        LowMemory(textModel, mmproj, Pictures(work, 1)[0], runs, t);
        BatchThroughput(work, textModel, mmproj, Pictures(work, pictureCount), batchPrompts, textRows, batchRuns, t, sequences);
        Console.WriteLine();
        Console.WriteLine($"Load average at the end: {LoadAverage()}.");
    }

    /// <summary>Decode tokens per second of all answers together, with 1, 2 and 4 in flight (32 tokens each, past end of sequence).</summary>
    private static void SequencesInFlight(PaliGemmaModel model, ImageEmbedding embedding, int runs)
    {
        var options = new GenerationOptions { MaxNewTokens = 33, IgnoreEndOfSequence = true };
        int[] counts = [1, 2, 4];
        // Each prompt's tokens alone, to count how many answers decoded together differ (quantized kernels for
        // several rows may round differently from one row's; on F32 MultiSequenceTests finds none).
        var alone = FourPrompts.Select(p => model.GenerateAsync(embedding, p, options).GetAwaiter().GetResult().Tokens).ToList();
        var differing = new int[counts.Length];
        var rounds = Paired.Rotate(runs, counts.Length, arm =>
        {
            var results = model.GenerateTogetherAsync([.. FourPrompts.Take(counts[arm]).Select(p => (embedding, p))], options).GetAwaiter().GetResult();
            differing[arm] += results.Select((r, i) => r.Tokens.SequenceEqual(alone[i]) ? 0 : 1).Sum();
            return results.Sum(r => r.Timings.DecodedTokens) / (results.Max(r => r.Timings.DecodeMs) / 1000);
        }, (round, rates) => Log($"sequences in flight, round {round + 1}: {string.Join(", ", rates.Select(r => r.ToString("F2", CultureInfo.InvariantCulture)))} tok/s"));

        Console.WriteLine($"### Decode throughput with several sequences in flight (one picture, {options.MaxNewTokens - 1} tokens decoded per answer, {runs} rounds, arms rotating)");
        Console.WriteLine();
        Console.WriteLine("| sequences | decode tok/s, all answers together (median, min-max) | / 1 sequence (median of per-round ratios) | answers whose tokens differ from decoding alone |");
        Console.WriteLine("|---|---|---|---|");
        for (int arm = 0; arm < counts.Length; arm++)
        {
            var values = rounds.Select(r => r[arm]).ToList();
            double ratio = Paired.Median(rounds.Select(r => r[arm] / r[0]));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {counts[arm]} | {Paired.Median(values):F2} ({values.Min():F2}-{values.Max():F2}) | {ratio:F3} | {differing[arm]} of {counts[arm] * runs} |"));
        }

        Console.WriteLine();
    }

    /// <summary>Four prompts on one picture: one embedding reused (one at a time, and decoded together) against four single requests.</summary>
    private static void PromptsOnOnePicture(PaliGemmaModel model, string picture, int runs)
    {
        var options = new GenerationOptions { MaxNewTokens = 20, IgnoreEndOfSequence = true };
        Func<double>[] arms =
        [
            () => Seconds(() =>
            {
                foreach (string prompt in FourPrompts)
                {
                    model.GenerateAsync(new GenerationRequest(picture, prompt), options).GetAwaiter().GetResult();
                }
            }),
            () => Seconds(() =>
            {
                var embedding = model.EmbedImageAsync(picture).GetAwaiter().GetResult();
                foreach (string prompt in FourPrompts)
                {
                    model.GenerateAsync(embedding, prompt, options).GetAwaiter().GetResult();
                }
            }),
            () => Seconds(() =>
            {
                var embedding = model.EmbedImageAsync(picture).GetAwaiter().GetResult();
                model.GenerateTogetherAsync([.. FourPrompts.Select(p => (embedding, p))], options).GetAwaiter().GetResult();
            }),
        ];
        var rounds = Paired.Rotate(runs, arms.Length, arm => arms[arm](), (round, seconds) =>
            Log($"4 prompts on one picture, round {round + 1}: {string.Join(", ", seconds.Select(v => v.ToString("F1", CultureInfo.InvariantCulture)))} s"));

        Console.WriteLine($"### Four prompts on one picture (model loaded once; {options.MaxNewTokens} tokens per answer; {runs} rounds, arms rotating)");
        Console.WriteLine();
        Console.WriteLine("| how | total time (median, min-max) | / 4 single requests (median of per-round ratios) |");
        Console.WriteLine("|---|---|---|");
        string[] labels = ["4 single requests (each encodes the picture)", "one embedding, 4 prompts one at a time", "one embedding, 4 prompts decoded together"];
        for (int arm = 0; arm < arms.Length; arm++)
        {
            var values = rounds.Select(r => r[arm]).ToList();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {labels[arm]} | {Paired.Median(values):F1} s ({values.Min():F1}-{values.Max():F1}) | {Paired.Median(rounds.Select(r => r[arm] / r[0])):F3} |"));
        }

        Console.WriteLine();
    }

    /// <summary>
    /// A whole batch job (<c>paligemma batch</c>, one process) against the bare engine answering the same requests one at a
    /// time with the model loaded once (<c>paligemma-bench bare-batch</c>, one process), alternating.
    /// </summary>
    private static void BatchThroughput(string work, string textModel, string mmproj, IReadOnlyList<string> pictures, string[] prompts, int[] textRowsOfPrompts, int pairs, string threads, int sequences)
    {
        const int Tokens = 32;
        string n = Tokens.ToString(CultureInfo.InvariantCulture);
        int items = pictures.Count * prompts.Length;
        string output = Path.Combine(work, "engine-batch.jsonl");
        List<JsonElement>? lastLines = null;
        ChildProcess.Result Product()
        {
            File.Delete(output);
            var result = ChildProcess.Run("paligemma", ["batch", "--model", textModel, "--mmproj", mmproj, .. pictures, "--prompt", prompts[0], "--prompt", prompts[1], "-n", n, "--ignore-eos", "--threads", threads, "--sequences", sequences.ToString(CultureInfo.InvariantCulture), "--output", output]);
            lastLines = [.. File.ReadAllLines(output).Select(l => JsonDocument.Parse(l).RootElement)];
            return result;
        }

        string[] textRows = [.. textRowsOfPrompts.Select(r => r.ToString(CultureInfo.InvariantCulture))];
        JsonElement? bareLine = null;
        ChildProcess.Result Bare()
        {
            var result = ChildProcess.Run("paligemma-bench", ["bare-batch", "--model", textModel, "--mmproj", mmproj, "--threads", threads, "--tokens", n, "--mmap", "false", .. textRows.SelectMany(r => new[] { "--text-rows", r }), .. pictures]);
            bareLine = JsonDocument.Parse(result.StandardOutput.Trim()).RootElement;
            return result;
        }

        var measured = new List<(ChildProcess.Result Product, ChildProcess.Result Bare)>();
        for (int pair = 0; pair < pairs; pair++)
        {
            var product = Product();
            var bare = Bare();
            measured.Add((product, bare));
            Log($"batch job, pair {pair + 1}: product {product.Seconds:F1} s, bare {bare.Seconds:F1} s");
        }

        double Rate(double seconds) => items / (seconds / 60);
        var productLines = lastLines!;
        double load = productLines[0].GetProperty("timings").GetProperty("load_ms").GetDouble() / 1000;
        // Answers decoded together report their group's prefill and their own decode from the group's start: a
        // group's time is its longest answer's (the lines come in groups of `sequences`, in input order).
        var groups = productLines.Chunk(sequences).ToList();
        double prefill = groups.Sum(g => g.Max(l => l.GetProperty("timings").GetProperty("prefill_ms").GetDouble())) / 1000;
        double decode = groups.Sum(g => g.Max(l => (Tokens - 1) / l.GetProperty("timings").GetProperty("decode_tokens_per_s").GetDouble()));
        var b = bareLine!.Value;
        Console.WriteLine($"### Batch job: {pictures.Count} pictures x 2 prompts (`caption en`, `detect cat`), {Tokens} tokens each past end of sequence, 640 x 480 PNGs ({pairs} pairs of whole processes, alternating)");
        Console.WriteLine();
        Console.WriteLine("| | wall (median) | items/min | product / bare items per minute (median of per-pair ratios) | where the time went (last run) |");
        Console.WriteLine("|---|---|---|---|---|");
        double productWall = Paired.Median(measured.Select(m => m.Product.Seconds));
        double bareWall = Paired.Median(measured.Select(m => m.Bare.Seconds));
        string inFlight = sequences > 1 ? $" ({sequences} answers at a time)" : string.Empty;
        string productSplit = string.Create(CultureInfo.InvariantCulture, $"load {load:F1} s, prefill {prefill:F1} s, decode {decode:F1} s{inFlight}, the rest (picture decoding, {pictures.Count} vision-tower runs, process start) {measured[^1].Product.Seconds - load - prefill - decode:F1} s");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| `paligemma batch --sequences {sequences}` | {productWall:F1} s | {Rate(productWall):F2} | {Paired.Median(measured.Select(m => m.Bare.Seconds / m.Product.Seconds)):F3} | {productSplit} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| bare engine, one request at a time | {bareWall:F1} s | {Rate(bareWall):F2} | 1 | load {b.GetProperty("load_ms").GetDouble() / 1000:F1} s, vision tower {b.GetProperty("image_encode_ms").GetDouble() / 1000:F1} s ({items} runs), prefill {b.GetProperty("prefill_ms").GetDouble() / 1000:F1} s, decode {b.GetProperty("decode_ms").GetDouble() / 1000:F1} s |"));
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Peak RSS (median): product {Gib(Paired.Median(measured.Select(m => (double)m.Product.PeakRssBytes)))}, bare {Gib(Paired.Median(measured.Select(m => (double)m.Bare.PeakRssBytes)))}."));
    }

    /// <summary>
    /// One 224 px caption as whole processes, <c>paligemma run --low-memory</c> against <c>paligemma run</c>, alternating:
    /// peak RSS of each, and the ratio of their decode rates.
    /// </summary>
    private static void LowMemory(string textModel, string mmproj, string picture, int pairs, string threads)
    {
        RunTimings Run(bool low) => RunTimings.From(ChildProcess.Run("paligemma", ["run", "--model", textModel, "--mmproj", mmproj, "-i", picture, "-p", "caption en", "-n", "21", "--ignore-eos", "--json", "--threads", threads, .. (low ? new[] { "--low-memory" } : [])]));
        var measured = Paired.Alternate(pairs, () => Run(true), () => Run(false));
        foreach (var (low, normal) in measured)
        {
            Log($"low memory: {Gib(low.PeakRssBytes)} vs {Gib(normal.PeakRssBytes)}, decode {low.DecodeTokensPerSecond:F2} vs {normal.DecodeTokensPerSecond:F2} tok/s");
        }

        Console.WriteLine($"### Low-memory mode: one caption (`paligemma run`, 224 px, 20 tokens decoded; {pairs} pairs of whole processes, alternating)");
        Console.WriteLine();
        Console.WriteLine("| mode | peak RSS (median, min-max) | wall (median) | decode tok/s (median) | low / normal (median of per-pair ratios) |");
        Console.WriteLine("|---|---|---|---|---|");
        string Row(string name, List<RunTimings> runs) => string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {Gib(Paired.Median(runs.Select(r => (double)r.PeakRssBytes)))} ({Gib(runs.Min(r => r.PeakRssBytes))}-{Gib(runs.Max(r => r.PeakRssBytes))}) | {Paired.Median(runs.Select(r => r.WallSeconds)):F1} s | {Paired.Median(runs.Select(r => r.DecodeTokensPerSecond)):F2} |");
        Console.WriteLine(Row("`--low-memory`", [.. measured.Select(m => m.A)]) + string.Create(CultureInfo.InvariantCulture,
            $" peak RSS {Paired.MedianRatio(measured, r => r.PeakRssBytes):F3}, wall {Paired.MedianRatio(measured, r => r.WallSeconds):F3}, decode {Paired.MedianRatio(measured, r => r.DecodeTokensPerSecond):F3} |"));
        Console.WriteLine(Row("normal", [.. measured.Select(m => m.B)]) + " 1 |");
        Console.WriteLine();
    }

    /// <summary>Noise pictures, 640 x 480 PNGs, the same bytes every time (seeded).</summary>
    private static List<string> Pictures(string work, int count)
    {
        string folder = Path.Combine(work, "engine-pictures");
        Directory.CreateDirectory(folder);
        var paths = new List<string>();
        for (int i = 0; i < count; i++)
        {
            string path = Path.Combine(folder, $"picture-{i:D2}.png");
            if (!File.Exists(path))
            {
                var random = new Random(i);
                using var image = new Image<Rgb24>(640, 480);
                image.ProcessPixelRows(rows =>
                {
                    for (int y = 0; y < rows.Height; y++)
                    {
                        foreach (ref var pixel in rows.GetRowSpan(y))
                        {
                            pixel = new Rgb24((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256));
                        }
                    }
                });
                image.SaveAsPng(path);
            }

            paths.Add(path);
        }

        return paths;
    }

    private static double Seconds(Action action)
    {
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalSeconds;
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

    private static string Gib(double bytes) => (bytes / (1L << 30)).ToString("F2", CultureInfo.InvariantCulture) + " GiB";

    private static void Log(string message) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");
}
