using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using PaliGemma.Bench.Measurement;

namespace PaliGemma.Bench;

/// <summary>
/// <c>paligemma-bench run</c>: the whole benchmark on a real-shape random-weight checkpoint:
/// generation, conversion and quantization, then the product against the bare engine and the
/// memory-bandwidth bound, medians of several runs. Prints a Markdown report.
/// </summary>
internal static class BenchCommand
{
    private const string Prompt = "answer en what is in the image and where is it?";

    public static Command Build()
    {
        var work = new Option<DirectoryInfo>("--work") { Description = "Folder for checkpoints and GGUFs (needs ~25 GB)", DefaultValueFactory = _ => new DirectoryInfo(Path.Combine(Path.GetTempPath(), "paligemma-bench")) };
        var model = new Option<string>("--model") { Description = "Shapes to benchmark", DefaultValueFactory = _ => "paligemma-3b-pt-224" };
        var runs = new Option<int>("--runs") { Description = "Runs per measurement (medians are reported)", DefaultValueFactory = _ => 3 };
        var threads = new Option<int>("--threads") { Description = "Threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var tokens = new Option<int>("--tokens") { Description = "Tokens decoded per run", DefaultValueFactory = _ => 32 };
        var reuse = new Option<bool>("--reuse") { Description = "Reuse the GGUF files of an earlier run instead of converting again" };
        var command = new Command("run", "Run the benchmark and print a Markdown report") { work, model, runs, threads, tokens, reuse };
        command.SetAction(parsed =>
        {
            Run(parsed.GetValue(work)!.FullName, parsed.GetValue(model)!, parsed.GetValue(runs), parsed.GetValue(threads), parsed.GetValue(tokens), parsed.GetValue(reuse));
            return 0;
        });
        return command;
    }

    private static void Run(string work, string model, int runs, int threads, int tokens, bool reuse)
    {
        Directory.CreateDirectory(work);
        using var report = new Report(Path.Combine(work, "report.md"));
        string t = threads.ToString(CultureInfo.InvariantCulture);
        double bandwidthBefore = Bandwidth(t);
        Log($"memory read bandwidth: {bandwidthBefore:F1} GB/s");

        var checkpoints = new Dictionary<string, string>();
        report.AppendLine($"### Conversion ({model}, random weights, {threads} threads)").AppendLine();
        report.AppendLine("| step | input | output | time | peak RSS | output size |").AppendLine("|---|---|---|---|---|---|");
        foreach (string dtype in new[] { "bf16", "f32" })
        {
            string dir = Path.Combine(work, $"{model}-{dtype}");
            if (!File.Exists(Path.Combine(dir, "config.json")))
            {
                var generated = ChildProcess.Run("paligemma-bench", "generate", "--model", model, "--out", dir, "--dtype", dtype, "--force");
                report.AppendLine($"| generate | - | {dtype} checkpoint | {generated.Seconds:F1} s | {Gib(generated.PeakRssBytes)} | {Gib(DirectoryBytes(dir))} |");
            }

            checkpoints[dtype] = dir;
        }

        var gguf = new Dictionary<string, (string Text, string Mmproj)>();
        foreach (var (input, text, mmproj) in new[] { ("f32", "f16", "f16"), ("bf16", "f16", "f16"), ("bf16", "q8_0", "q8_0"), ("bf16", "q4_k_m", "q8_0") })
        {
            string outDir = Path.Combine(work, $"gguf-{input}");
            string name = Path.GetFileName(checkpoints[input]);
            string[] existing = [Path.Combine(outDir, $"{name}.{text}.gguf"), Path.Combine(outDir, $"{name}.mmproj.{mmproj}.gguf")];
            if (reuse && existing.All(File.Exists))
            {
                gguf.TryAdd(text, (existing[0], existing[1]));
                continue;
            }

            var converted = ChildProcess.Run("paligemma-convert", checkpoints[input], "--out-dir", outDir, "--outtype", text, "--mmproj-type", mmproj, "--force");
            string[] paths = converted.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            report.AppendLine($"| paligemma-convert | {input} safetensors | {text} + {mmproj} mmproj | {converted.Seconds:F1} s | {Gib(converted.PeakRssBytes)} | {Gib(new FileInfo(paths[0]).Length)} + {Gib(new FileInfo(paths[1]).Length)} |");
            Log($"converted {input} -> {text}: {converted.Seconds:F1} s, {Gib(converted.PeakRssBytes)}");
            if (input == "bf16" || !gguf.ContainsKey(text))
            {
                gguf[text] = (paths[0], paths[1]);
            }

            if (text == "f16" && input == "bf16")
            {
                gguf["f16-mmproj"] = (paths[0], paths[1]);
            }
        }

        string viaLlama = Path.Combine(work, "llama-quantize.q4_k_m.gguf");
        var quantized = reuse ? null : ChildProcess.Run("paligemma", "quantize", gguf["f16"].Text, viaLlama, "--type", "q4_k_m", "--force", "--threads", t);
        if (quantized is not null)
        {
            report.AppendLine($"| paligemma quantize (llama_model_quantize) | f16 GGUF | q4_k_m | {quantized.Seconds:F1} s | {Gib(quantized.PeakRssBytes)} | {Gib(new FileInfo(viaLlama).Length)} |");
            File.Delete(viaLlama);
        }

        report.AppendLine().AppendLine($"### Inference (224 px picture, {Prompt.Split(' ').Length}-word prompt, {tokens} tokens decoded, {threads} threads; median (min-max) of {runs} runs)").AppendLine();
        report.AppendLine("| text + mmproj | load | image encode | prefill | decode tok/s | vs bare: encode / prefill / decode | bandwidth bound tok/s | decode / bound | time to first token (bare load+encode+prefill) | peak RSS (mmap) | bare peak RSS: mmap / no mmap |");
        report.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        string image = Path.Combine(RepositoryRoot(), "test_images", "astronaut.png");
        foreach (var (text, mmprojType) in new[] { ("f16", "f16"), ("q8_0", "q8_0"), ("q4_k_m", "q8_0") })
        {
            string mmproj = mmprojType == "f16" ? gguf["f16"].Mmproj : gguf["q8_0"].Mmproj;
            string textModel = gguf[text].Text;
            var product = Enumerable.Range(0, runs).Select(_ => Json(ChildProcess.Run("paligemma", "run", "--model", textModel, "--mmproj", mmproj, "-i", image, "-p", Prompt, "-n", tokens.ToString(CultureInfo.InvariantCulture), "--ignore-eos", "--json", "--threads", t))).ToList();
            int textRows = product[0].GetProperty("prompt_tokens").GetInt32() - 256;
            var bare = Enumerable.Range(0, runs).Select(_ => Json(ChildProcess.Run("paligemma-bench", "bare", "--model", textModel, "--mmproj", mmproj, "--threads", t, "--text-rows", textRows.ToString(CultureInfo.InvariantCulture), "--tokens", tokens.ToString(CultureInfo.InvariantCulture)))).ToList();
            var bareNoMmap = Json(ChildProcess.Run("paligemma-bench", "bare", "--model", textModel, "--mmproj", mmproj, "--threads", t, "--tokens", "4", "--no-mmap"));
            var firstToken = Enumerable.Range(0, runs).Select(_ => ChildProcess.Run("paligemma", "run", "--model", textModel, "--mmproj", mmproj, "-i", image, "-p", Prompt, "-n", "1", "--ignore-eos", "--threads", t).FirstOutputSeconds).ToList();

            double Timing(List<JsonElement> results, string name) => Median(results.Select(r => Get(r, name)));
            string Spread(List<JsonElement> results, string name, string format) => $"{Timing(results, name).ToString(format, CultureInfo.InvariantCulture)} ({results.Min(r => Get(r, name)).ToString(format, CultureInfo.InvariantCulture)}-{results.Max(r => Get(r, name)).ToString(format, CultureInfo.InvariantCulture)})";
            // The VM's bandwidth flips between two levels: take the higher of two measurements so
            // that the bound is never flattering.
            double bandwidth = Math.Max(bandwidthBefore, Bandwidth(t));
            double bound = bandwidth * 1e9 / GgufKeys.WeightBytesPerToken(textModel);
            double decode = Timing(product, "decode_tokens_per_s");
            double bareFirst = (Timing(bare, "load_ms") + Timing(bare, "image_encode_ms") + Timing(bare, "prefill_ms")) / 1000;
            report.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {text} + {mmprojType} | {Spread(product, "load_ms", "F0")} ms | {Spread(product, "image_encode_ms", "F0")} ms | {Spread(product, "prefill_ms", "F0")} ms | {Spread(product, "decode_tokens_per_s", "F2")} " +
                $"| {Timing(product, "image_encode_ms") / Timing(bare, "image_encode_ms"):F3} / {Timing(product, "prefill_ms") / Timing(bare, "prefill_ms"):F3} / {decode / Timing(bare, "decode_tokens_per_s"):F3} " +
                $"| {bound:F1} | {decode / bound:P0} | {Median(firstToken):F2} s ({bareFirst:F2} s) | {Gib((long)Timing(product, "peak_rss_bytes"))} | {Gib((long)Timing(bare, "peak_rss_bytes"))} / {Gib((long)Get(bareNoMmap, "peak_rss_bytes"))} |"));
            Log($"{text} + {mmprojType}: decode {decode:F2} tok/s (bare {Timing(bare, "decode_tokens_per_s"):F2}), prefill {Timing(product, "prefill_ms"):F0} ms (bare {Timing(bare, "prefill_ms"):F0})");
        }

        double bandwidthAfter = Bandwidth(t);
        report.AppendLine().AppendLine(string.Create(CultureInfo.InvariantCulture, $"Memory read bandwidth ({threads} threads), measured in the same run: {bandwidthBefore:F1} GB/s before, {bandwidthAfter:F1} GB/s after; each bound uses the higher of the first and one taken next to it. Machine: {Environment.ProcessorCount} cores, {Gib(TotalMemory())} RAM, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}."));
    }

    /// <summary>The Markdown report, printed and saved line by line so that a failure late in a long run loses nothing.</summary>
    private sealed class Report(string path) : IDisposable
    {
        private readonly StreamWriter _file = new(path) { AutoFlush = true };

        public Report AppendLine(string line = "")
        {
            Console.WriteLine(line);
            _file.WriteLine(line);
            return this;
        }

        public void Dispose() => _file.Dispose();
    }

    private static double Bandwidth(string threads) => double.Parse(ChildProcess.Run("paligemma-bench", "bandwidth", "--threads", threads).StandardOutput.Trim(), CultureInfo.InvariantCulture);

    private static JsonElement Json(ChildProcess.Result result) => JsonDocument.Parse(result.StandardOutput.Trim().Split('\n')[^1]).RootElement.Clone();

    private static double Get(JsonElement json, string name) => json.TryGetProperty(name, out var value) ? value.GetDouble() : json.GetProperty("timings").GetProperty(name).GetDouble();

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string Gib(long bytes) => (bytes / (double)(1L << 30)).ToString("F2", CultureInfo.InvariantCulture) + " GiB";

    private static long DirectoryBytes(string dir) => Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);

    private static long TotalMemory() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    private static void Log(string message) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "PaliGemma.Gguf.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("run from inside the repository");
    }
}
