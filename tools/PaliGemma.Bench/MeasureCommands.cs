using System.CommandLine;
using System.Globalization;
using PaliGemma.Bench.Measurement;

namespace PaliGemma.Bench;

/// <summary>The measurements that run in a process of their own, so that each has its own peak RSS.</summary>
internal static class MeasureCommands
{
    public static Command BuildBare()
    {
        var model = new Option<FileInfo>("--model") { Required = true, Description = "Text GGUF" };
        var mmproj = new Option<FileInfo>("--mmproj") { Required = true, Description = "mmproj GGUF" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "Threads" };
        var textRows = new Option<int>("--text-rows") { DefaultValueFactory = _ => 14, Description = "Text rows after the image rows in the prefix" };
        var tokens = new Option<int>("--tokens") { DefaultValueFactory = _ => 32, Description = "Tokens to decode" };
        var noMmap = new Option<bool>("--no-mmap") { Description = "Load the text model without memory mapping" };
        var command = new Command("bare", "Load, encode, prefill and decode straight on LLamaSharp (no product code); prints one JSON line")
        {
            model, mmproj, threads, textRows, tokens, noMmap,
        };
        command.SetAction(parsed =>
        {
            var r = BareEngine.Run(parsed.GetValue(model)!.FullName, parsed.GetValue(mmproj)!.FullName, parsed.GetValue(threads), parsed.GetValue(textRows), parsed.GetValue(tokens), !parsed.GetValue(noMmap));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"load_ms\":{r.LoadMs:F1},\"image_encode_ms\":{r.ImageEncodeMs:F1},\"prefill_ms\":{r.PrefillMs:F1},\"decode_tokens_per_s\":{r.DecodeTokensPerSecond:F2},\"peak_rss_bytes\":{r.PeakRssBytes}}}"));
            return 0;
        });
        return command;
    }

    public static Command BuildBandwidth()
    {
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "Threads" };
        var command = new Command("bandwidth", "Measure memory read bandwidth (GB/s)") { threads };
        command.SetAction(parsed =>
        {
            Console.WriteLine((MemoryBandwidth.BytesPerSecond(parsed.GetValue(threads)) / 1e9).ToString("F1", CultureInfo.InvariantCulture));
            return 0;
        });
        return command;
    }
}
