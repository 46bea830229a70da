using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using PaliGemma.Bench.Measurement;

namespace PaliGemma.Bench;

/// <summary>
/// <c>paligemma-bench run</c>: the whole benchmark on a real-shape random-weight checkpoint:
/// generation, conversion and quantization, then the product against the bare engine and the
/// memory-bandwidth bound, then what each of the product's settings gains, and the accuracy of the
/// quantized files; product and bare runs alternate and are compared pair by pair. Prints a
/// Markdown report.
/// </summary>
internal static class BenchCommand
{
    private const string Prompt = "answer en what is in the image and where is it?";

    public static Command Build()
    {
        var work = new Option<DirectoryInfo>("--work") { Description = "Folder for checkpoints and GGUFs (needs ~25 GB)", DefaultValueFactory = _ => new DirectoryInfo(Path.Combine(Path.GetTempPath(), "paligemma-bench")) };
        var model = new Option<string>("--model") { Description = "Shapes to benchmark", DefaultValueFactory = _ => "paligemma-3b-pt-224" };
        var runs = new Option<int>("--runs") { Description = "Pairs of runs per comparison (medians of per-pair ratios are reported)", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--threads") { Description = "Threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var tokens = new Option<int>("--tokens") { Description = "Tokens decoded per run", DefaultValueFactory = _ => 32 };
        var reuse = new Option<bool>("--reuse") { Description = "Reuse the GGUF files of an earlier run instead of converting again" };
        var inferenceOnly = new Option<bool>("--inference-only") { Description = "Only the product / bare engine comparison, on the GGUF files of an earlier run (implies --reuse)" };
        var command = new Command("run", "Run the benchmark and print a Markdown report") { work, model, runs, threads, tokens, reuse, inferenceOnly };
        command.SetAction(parsed =>
        {
            bool only = parsed.GetValue(inferenceOnly);
            Run(parsed.GetValue(work)!.FullName, parsed.GetValue(model)!, parsed.GetValue(runs), parsed.GetValue(threads), parsed.GetValue(tokens), parsed.GetValue(reuse) || only, only);
            return 0;
        });
        return command;
    }

    private static void Run(string work, string model, int runs, int threads, int tokens, bool reuse, bool inferenceOnly)
    {
        Directory.CreateDirectory(work);
        using var report = new Report(Path.Combine(work, "report.md"));
        string t = threads.ToString(CultureInfo.InvariantCulture);
        double bandwidthBefore = Bandwidth(t);
        Log($"memory read bandwidth: {bandwidthBefore:F1} GB/s");

        var checkpoints = new Dictionary<string, string>();
        report.AppendLine($"### Conversion ({model}, random weights, {threads} threads)").AppendLine();
        report.AppendLine("| step | input | output | time | peak RSS | output size |").AppendLine("|---|---|---|---|---|---|");
        // The F32 checkpoint only feeds the conversion table: an inference-only run needs the BF16 one's GGUFs alone.
        string[] dtypes = inferenceOnly ? ["bf16"] : ["bf16", "f32"];
        foreach (string dtype in dtypes)
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
            if (!checkpoints.ContainsKey(input))
            {
                continue;
            }

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

        string image = Path.Combine(RepositoryRoot(), "test_images", "astronaut.png");
        string n = tokens.ToString(CultureInfo.InvariantCulture);
        string pairs = $"median of {runs} per-pair ratios, runs alternating A B A B";
        ChildProcess.Result Product(string textModel, string mmproj) =>
            ChildProcess.Run("paligemma", "run", "--model", textModel, "--mmproj", mmproj, "-i", image, "-p", Prompt, "-n", n, "--ignore-eos", "--json", "--threads", t);
        RunTimings Bare(string textModel, string mmproj, int textRows, int decoded, bool mmap, string encoderFlashAttention) => RunTimings.From(ChildProcess.Run(
            "paligemma-bench", "bare", "--model", textModel, "--mmproj", mmproj, "--threads", t, "--text-rows", textRows.ToString(CultureInfo.InvariantCulture),
            "--tokens", decoded.ToString(CultureInfo.InvariantCulture), "--mmap", mmap ? "true" : "false", "--encoder-flash-attention", encoderFlashAttention));
        const string Disabled = "LLAMA_FLASH_ATTENTION_TYPE_DISABLED", Enabled = "LLAMA_FLASH_ATTENTION_TYPE_ENABLED";

        report.AppendLine().AppendLine($"### Inference, product against the bare engine with the product's settings (224 px picture, {Prompt.Split(' ').Length}-word prompt, {tokens} tokens decoded, {threads} threads)").AppendLine();
        report.AppendLine($"Product columns: median (min-max) of {runs} runs. Product / bare: {pairs}; the bare engine uses the product's threads, context, batch, memory-mapping choice and vision-encoder flash attention (off). Wall is the whole process, start to exit.").AppendLine();
        report.AppendLine("| text + mmproj | load | image encode | prefill | decode | product / bare: wall, load, encode, prefill, decode tok/s | decode / bandwidth bound | peak RSS: product / bare | mmap |");
        report.AppendLine("|---|---|---|---|---|---|---|---|---|");
        var rows = new[] { ("f16", "f16"), ("q8_0", "q8_0"), ("q4_k_m", "q8_0") };
        var textRowsOf = new Dictionary<string, int>();
        foreach (var (text, mmprojType) in rows)
        {
            string mmproj = mmprojType == "f16" ? gguf["f16"].Mmproj : gguf["q8_0"].Mmproj;
            string textModel = gguf[text].Text;
            // The first product run tells the bare engine the prefix length and the mmap choice to copy.
            var probe = Product(textModel, mmproj);
            var first = RunTimings.From(probe);
            int textRows = JsonDocument.Parse(probe.StandardOutput.Trim().Split('\n')[^1]).RootElement.GetProperty("prompt_tokens").GetInt32() - 256;
            textRowsOf[text] = textRows;
            bool mapped = first.MemoryMapped ?? throw new InvalidOperationException("paligemma run --json did not report memory_mapped");
            var measured = Paired.Alternate(runs, () => RunTimings.From(Product(textModel, mmproj)), () => Bare(textModel, mmproj, textRows, tokens, mapped, Disabled));
            var product = measured.Select(p => p.A).ToList();

            string Spread(Func<RunTimings, double> value, string format) =>
                $"{Paired.Median(product.Select(value)).ToString(format, CultureInfo.InvariantCulture)} ({product.Min(value).ToString(format, CultureInfo.InvariantCulture)}-{product.Max(value).ToString(format, CultureInfo.InvariantCulture)})";
            double Ratio(Func<RunTimings, double> value) => Paired.MedianRatio(measured, value);
            // The VM's bandwidth flips between two levels: take the higher of two measurements so
            // that the bound is never flattering.
            double bandwidth = Math.Max(bandwidthBefore, Bandwidth(t));
            double bound = bandwidth * 1e9 / GgufKeys.WeightBytesPerToken(textModel);
            double decode = Paired.Median(product.Select(r => r.DecodeTokensPerSecond));
            report.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {text} + {mmprojType} | {Spread(r => r.LoadMs / 1000, "F2")} s | {Spread(r => r.ImageEncodeMs / 1000, "F2")} s | {Spread(r => r.PrefillMs / 1000, "F2")} s | {Spread(r => r.DecodeTokensPerSecond, "F1")} tok/s " +
                $"| {Ratio(r => r.WallSeconds):F3}, {Ratio(r => r.LoadMs):F3}, {Ratio(r => r.ImageEncodeMs):F3}, {Ratio(r => r.PrefillMs):F3}, {Ratio(r => r.DecodeTokensPerSecond):F3} " +
                $"| {decode / bound:P0} of {bound:F1} tok/s | {Gib((long)Paired.Median(product.Select(r => (double)r.PeakRssBytes)))} / {Gib((long)Paired.Median(measured.Select(p => (double)p.B.PeakRssBytes)))} | {(mapped ? "yes" : "no")} |"));
            Log($"{text} + {mmprojType}: product/bare wall {Ratio(r => r.WallSeconds):F3}, decode {Ratio(r => r.DecodeTokensPerSecond):F3}");
        }

        if (inferenceOnly)
        {
            report.AppendLine().AppendLine(string.Create(CultureInfo.InvariantCulture, $"Memory read bandwidth ({threads} threads): {bandwidthBefore:F1} GB/s before, {Bandwidth(t):F1} GB/s after. Machine: {Environment.ProcessorCount} cores, {Gib(TotalMemory())} RAM, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}."));
            return;
        }

        // What each of the product's settings gains, measured on the bare engine with everything else equal.
        report.AppendLine().AppendLine($"### Vision encoder flash attention (bare engine, on / off, {pairs})").AppendLine();
        report.AppendLine("| mmproj | image encode, off (the product's) | image encode, on | on / off |").AppendLine("|---|---|---|---|");
        foreach (var (text, mmprojType) in new[] { ("f16", "f16"), ("q8_0", "q8_0") })
        {
            string mmproj = gguf[text].Mmproj;
            var measured = Paired.Alternate(runs, () => Bare(gguf[text].Text, mmproj, textRowsOf[text], 1, true, Enabled), () => Bare(gguf[text].Text, mmproj, textRowsOf[text], 1, true, Disabled));
            report.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {mmprojType} | {Paired.Median(measured.Select(p => p.B.ImageEncodeMs)) / 1000:F2} s | {Paired.Median(measured.Select(p => p.A.ImageEncodeMs)) / 1000:F2} s | {Paired.MedianRatio(measured, r => r.ImageEncodeMs):F3} |"));
        }

        report.AppendLine().AppendLine($"### Memory mapping of the text model (bare engine, mmap / no mmap, {pairs}; {tokens} tokens decoded)").AppendLine();
        report.AppendLine("| text | product's choice | peak RSS, mmap | peak RSS, no mmap | load, mmap / no mmap | decode tok/s, mmap / no mmap |").AppendLine("|---|---|---|---|---|---|");
        foreach (var (text, mmprojType) in rows)
        {
            string mmproj = mmprojType == "f16" ? gguf["f16"].Mmproj : gguf["q8_0"].Mmproj;
            var measured = Paired.Alternate(runs, () => Bare(gguf[text].Text, mmproj, textRowsOf[text], tokens, true, Disabled), () => Bare(gguf[text].Text, mmproj, textRowsOf[text], tokens, false, Disabled));
            bool productMaps = RunTimings.From(ChildProcess.Run("paligemma", "run", "--model", gguf[text].Text, "--mmproj", mmproj, "-i", image, "-p", Prompt, "-n", "1", "--json", "--threads", t)).MemoryMapped == true;
            report.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {text} | {(productMaps ? "mmap" : "no mmap")} | {Gib((long)Paired.Median(measured.Select(p => (double)p.A.PeakRssBytes)))} | {Gib((long)Paired.Median(measured.Select(p => (double)p.B.PeakRssBytes)))} " +
                $"| {Paired.MedianRatio(measured, r => r.LoadMs):F3} | {Paired.MedianRatio(measured, r => r.DecodeTokensPerSecond):F3} |"));
        }

        report.AppendLine().AppendLine("### Accuracy at real shapes (`paligemma-bench accuracy`: 3 pictures x 2 prompts x 16 teacher-forced steps against the F16 GGUF, `--exact`)").AppendLine();
        var accuracy = ChildProcess.Run("paligemma-bench", "accuracy", "--reference", gguf["f16"].Text, "--reference-mmproj", gguf["f16"].Mmproj, "--candidate", gguf["q8_0"].Text, gguf["q4_k_m"].Text, "--candidate-mmproj", gguf["q8_0"].Mmproj);
        foreach (string line in accuracy.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            report.AppendLine(line);
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
