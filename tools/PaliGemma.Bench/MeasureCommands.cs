using System.CommandLine;
using System.Globalization;
using LLama.Native;
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
        // No defaults for the settings the product chooses: the caller says which it compares with.
        var mmap = new Option<bool>("--mmap") { Required = true, Description = "Memory-map the text model (true/false); the product maps all but Q4_0/Q4_K files" };
        var encoderFlashAttention = new Option<LLamaFlashAttentionType>("--encoder-flash-attention")
        {
            Required = true,
            Description = "mtmd's flash attention in the vision encoder: LLAMA_FLASH_ATTENTION_TYPE_DISABLED (the product's), _ENABLED or _AUTO (mtmd's default)",
        };
        var command = new Command("bare", "Load, encode, prefill and decode straight on LLamaSharp (no product code); prints one JSON line")
        {
            model, mmproj, threads, textRows, tokens, mmap, encoderFlashAttention,
        };
        command.SetAction(parsed =>
        {
            var r = BareEngine.Run(parsed.GetValue(model)!.FullName, parsed.GetValue(mmproj)!.FullName, parsed.GetValue(threads), parsed.GetValue(textRows), parsed.GetValue(tokens), parsed.GetValue(mmap), parsed.GetValue(encoderFlashAttention));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"load_ms\":{r.LoadMs:F1},\"image_encode_ms\":{r.ImageEncodeMs:F1},\"prefill_ms\":{r.PrefillMs:F1},\"decode_tokens_per_s\":{r.DecodeTokensPerSecond:F2},\"peak_rss_bytes\":{r.PeakRssBytes}}}"));
            return 0;
        });
        return command;
    }

    public static Command BuildBareBatch()
    {
        var model = new Option<FileInfo>("--model") { Required = true, Description = "Text GGUF" };
        var mmproj = new Option<FileInfo>("--mmproj") { Required = true, Description = "mmproj GGUF" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "Threads" };
        var textRows = new Option<int[]>("--text-rows") { Required = true, Description = "Text rows of a prompt (repeat for several: one request per picture and value)" };
        var tokens = new Option<int>("--tokens") { DefaultValueFactory = _ => 32, Description = "Tokens to decode per request" };
        var mmap = new Option<bool>("--mmap") { Required = true, Description = "Memory-map the text model (true/false)" };
        var pictures = new Argument<FileInfo[]>("pictures") { Arity = ArgumentArity.OneOrMore, Description = "Pictures, read by mtmd's own helper" };
        var command = new Command("bare-batch", "Many requests straight on LLamaSharp, one at a time, the model loaded once (no product code); prints one JSON line")
        {
            model, mmproj, threads, textRows, tokens, mmap, pictures,
        };
        command.SetAction(parsed =>
        {
            using var session = new BareEngine.Session(parsed.GetValue(model)!.FullName, parsed.GetValue(mmproj)!.FullName, parsed.GetValue(threads), parsed.GetValue(mmap), LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_DISABLED);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            double encode = 0, prefill = 0, decodeSeconds = 0;
            int requests = 0, n = parsed.GetValue(tokens);
            foreach (var picture in parsed.GetValue(pictures)!)
            {
                foreach (int rows in parsed.GetValue(textRows)!)
                {
                    // One request at a time from scratch: the picture is read and encoded again for each prompt.
                    using var bitmap = session.Picture(picture.FullName);
                    var answer = session.Answer(bitmap, rows, n);
                    encode += answer.ImageEncodeMs;
                    prefill += answer.PrefillMs;
                    decodeSeconds += n / answer.DecodeTokensPerSecond;
                    requests++;
                }
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"load_ms\":{session.LoadMs:F1},\"requests\":{requests},\"answer_seconds\":{clock.Elapsed.TotalSeconds:F3},\"image_encode_ms\":{encode:F1},\"prefill_ms\":{prefill:F1},\"decode_ms\":{decodeSeconds * 1000:F1}}}"));
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
