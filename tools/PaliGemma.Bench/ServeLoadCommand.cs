using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Native;
using PaliGemma.Server;

namespace PaliGemma.Bench;

/// <summary>
/// <c>paligemma-bench serve-load</c>: a bounded load test of <c>paligemma serve</c>'s server on loopback. It loads
/// the model, asks the library itself (PaliGemmaModel.Generate, greedy) every (picture, prompt) of the mix, starts
/// the server in this process on 127.0.0.1 with an API key, warms it up with the same mix, and then sends a fixed
/// number of requests from concurrent clients, valid ones (chat completions whole and streamed, the native endpoint
/// as multipart and as JSON) shuffled with invalid ones (each with the 4xx it must get). It stops by itself and fails
/// (exit 1) if a valid answer's tokens differ from the library's, an invalid request gets anything but its 4xx, any
/// answer is a 5xx, or resident memory after the run is more than --max-memory-growth (5%) above its level after the warm-up.
/// </summary>
internal static class ServeLoadCommand
{
    private const string ApiKey = "serve-load-key";
    private const long BodyLimit = 2L << 20;
    private const int TokensCap = 64;

    public static Command Build()
    {
        var checkpoint = new Option<DirectoryInfo?>("--checkpoint") { Description = "Hugging Face checkpoint folder, converted to F32 in a temporary folder (or --model and --mmproj)" };
        var model = new Option<FileInfo?>("--model") { Description = "Text model GGUF (with --mmproj)" };
        var mmproj = new Option<FileInfo?>("--mmproj") { Description = "Vision (mmproj) GGUF (with --model)" };
        var images = new Option<FileInfo[]>("--image") { Description = "A picture of the mix (repeat the option)", Required = true };
        var prompts = new Option<string[]>("--prompt") { Description = "Prompts of the mix (repeat the option)", DefaultValueFactory = _ => ["caption en", "answer en how many shapes?", "detect circle"], AllowMultipleArgumentsPerToken = false };
        var clients = new Option<int>("--clients") { Description = "Concurrent clients", DefaultValueFactory = _ => 8 };
        var requests = new Option<int>("--requests") { Description = "Requests measured (after the warm-up)", DefaultValueFactory = _ => 200 };
        var warmup = new Option<int>("--warmup") { Description = "Requests of the same mix sent first, not measured (as many as measured: the pools and allocator arenas reach their working size)", DefaultValueFactory = _ => 200 };
        var invalidShare = new Option<double>("--invalid-share") { Description = "Share of invalid requests in the mix", DefaultValueFactory = _ => 0.35 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "max_tokens of every valid request", DefaultValueFactory = _ => 24 };
        var seed = new Option<int>("--seed") { Description = "Seed of the mix's order", DefaultValueFactory = _ => 1 };
        var exact = new Option<bool>("--exact") { Description = "Load as paligemma --exact (flash attention off, F32 KV cache)" };
        var json = new Option<FileInfo?>("--json") { Description = "Also write the library's answers and the figures to this JSON file" };
        var maxGrowth = new Option<double>("--max-memory-growth") { Description = "Largest growth of resident memory from after the warm-up to after the run, as a fraction", DefaultValueFactory = _ => 0.05 };
        var command = new Command("serve-load", "Bounded load test of the HTTP server on loopback: concurrent clients, valid and invalid requests, answers checked against the library")
        {
            checkpoint, model, mmproj, images, prompts, clients, requests, warmup, invalidShare, maxTokens, seed, exact, json, maxGrowth,
        };
        command.SetAction(parsed =>
        {
            var settings = new Settings(
                parsed.GetValue(clients), parsed.GetValue(requests), parsed.GetValue(warmup), parsed.GetValue(invalidShare), parsed.GetValue(maxTokens), parsed.GetValue(seed), parsed.GetValue(maxGrowth));
            if (settings.Clients < 1 || settings.Requests < 1 || settings.Warmup < 0 || settings.InvalidShare is < 0 or > 1 || settings.MaxTokens is < 1 or > TokensCap)
            {
                Console.Error.WriteLine($"error: --clients and --requests must be positive, --warmup >= 0, --invalid-share from 0 to 1, --max-tokens from 1 to {TokensCap}");
                return 2;
            }

            var files = Resolve(parsed.GetValue(checkpoint), parsed.GetValue(model), parsed.GetValue(mmproj));
            if (files is null)
            {
                Console.Error.WriteLine("error: give --checkpoint DIR, or --model and --mmproj");
                return 2;
            }

            string[] paths = [.. parsed.GetValue(images)!.Select(f => f.FullName)];
            if (paths.FirstOrDefault(p => !File.Exists(p)) is { } missing)
            {
                Console.Error.WriteLine($"error: no such picture: {missing}");
                return 2;
            }

            return RunAsync(files, paths, parsed.GetValue(prompts)!, settings, parsed.GetValue(exact), parsed.GetValue(json)?.FullName).GetAwaiter().GetResult();
        });
        return command;
    }

    private sealed record Settings(int Clients, int Requests, int Warmup, double InvalidShare, int MaxTokens, int Seed, double MaxMemoryGrowth);

    /// <summary>One (picture, prompt), what the library answers to it, and the JSON bodies that ask for it.</summary>
    private sealed record Case(string Picture, byte[] Bytes, string Prompt, GenerationResult Expected, RequestBodies Bodies);

    /// <summary>
    /// Built once, before any request is sent: serializing a picture's data URL per request would put the load
    /// generator's own buffers (megabytes from the shared array pool, which keeps them) into the memory measured.
    /// </summary>
    private sealed record RequestBodies(byte[] Chat, byte[] ChatStreamed, byte[] NativeJson)
    {
        public static RequestBodies For(byte[] picture, string prompt, int maxTokens) => new(
            ChatJson(picture, prompt, maxTokens, stream: false),
            ChatJson(picture, prompt, maxTokens, stream: true),
            JsonSerializer.SerializeToUtf8Bytes(new { image = Convert.ToBase64String(picture), prompt, max_tokens = maxTokens }));
    }

    /// <summary>One request to send: how to build it and what must come back.</summary>
    private sealed record Planned(string Kind, Case? Case, int ExpectedStatus, Func<HttpRequestMessage> Build);

    private sealed record Outcome(Planned Plan, int Status, double Seconds, string? Problem);

    private static ConversionResult? Resolve(DirectoryInfo? checkpoint, FileInfo? model, FileInfo? mmproj)
    {
        if (checkpoint is not null)
        {
            string folder = Path.Combine(Path.GetTempPath(), $"paligemma-serve-load-{Environment.ProcessId}");
            Console.Error.WriteLine($"converting {checkpoint.FullName} to F32 in {folder}");
            return CheckpointConverter.Convert(checkpoint.FullName, new ConversionOptions { OutputDirectory = folder, TextType = OutputType.F32, MmprojType = OutputType.F32 });
        }

        return model is not null && mmproj is not null ? new ConversionResult(model.FullName, mmproj.FullName) : null;
    }

    private static async Task<int> RunAsync(ConversionResult files, string[] pictures, string[] prompts, Settings settings, bool exact, string? jsonPath)
    {
        using var model = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions
        {
            Threads = Environment.ProcessorCount,
            Precision = exact ? Precision.Exact : Precision.Fast,
        });

        // What the library answers, each (picture, prompt) once, before the server exists.
        var options = new GenerationOptions { MaxNewTokens = settings.MaxTokens };
        var cases = pictures.SelectMany(picture => prompts.Select(prompt =>
        {
            byte[] bytes = File.ReadAllBytes(picture);
            return new Case(picture, bytes, prompt, model.Generate(ImagePreprocessor.Load(picture, model.ImageSize), prompt, options), RequestBodies.For(bytes, prompt, settings.MaxTokens));
        })).ToList();

        await using var server = await PaliGemmaServer.StartAsync(model, new ServerOptions
        {
            Port = 0,
            ApiKey = ApiKey,
            MaxRequestBodyBytes = BodyLimit,
            MaxTokensCap = TokensCap,
            // Every client may have a request waiting: a 429 here would be the load test's own doing.
            MaxQueuedRequests = settings.Clients,
        });

        var random = new Random(settings.Seed);
        var warmup = Plan(cases, settings, settings.Warmup, random);
        var measured = Plan(cases, settings, settings.Requests, random);
        var clock = Stopwatch.StartNew();
        await SendAllAsync(server.BaseAddress, warmup, settings.Clients);
        double warmupSeconds = clock.Elapsed.TotalSeconds;
        var afterWarmup = await MemorySnapshot.TakeSettledAsync();

        clock.Restart();
        var outcomes = await SendAllAsync(server.BaseAddress, measured, settings.Clients);
        double seconds = clock.Elapsed.TotalSeconds;
        var afterRun = await MemorySnapshot.TakeSettledAsync();

        var problems = outcomes.Where(o => o.Problem is not null).ToList();
        double memoryRatio = afterRun.ResidentBytes / (double)afterWarmup.ResidentBytes;
        var valid = outcomes.Where(o => o.Plan.Case is not null).Select(o => o.Seconds).ToList();
        var invalid = outcomes.Where(o => o.Plan.Case is null).Select(o => o.Seconds).ToList();
        var all = outcomes.Select(o => o.Seconds).ToList();
        double[] load = ReadLoadAverage();

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(files.TextModelPath)}: {cases.Count} (picture, prompt) cases, max_tokens {settings.MaxTokens}, {(exact ? "exact" : "fast")}; {settings.Clients} clients, {settings.Warmup} warm-up requests ({warmupSeconds:F1} s), then {settings.Requests} measured"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"machine: {Environment.ProcessorCount} cores, load average {load[0]:F2} {load[1]:F2} {load[2]:F2} (1, 5, 15 min) after the run"));
        Console.WriteLine();
        Console.WriteLine("| requests | count | requests/s | p50 latency | p95 latency |");
        Console.WriteLine("|---|---|---|---|---|");
        Console.WriteLine(Row("all", all, seconds));
        Console.WriteLine(Row("valid (answered by the model)", valid, seconds));
        Console.WriteLine(Row("invalid (refused, 4xx)", invalid, seconds));
        Console.WriteLine();
        foreach (var group in outcomes.GroupBy(o => (o.Plan.Kind, o.Status)).OrderBy(g => g.Key.Kind, StringComparer.Ordinal))
        {
            Console.WriteLine($"  {group.Key.Kind}: {group.Count()} x {group.Key.Status}");
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"resident memory, settled: {afterWarmup.ResidentBytes / 1e6:F1} MB after the warm-up, {afterRun.ResidentBytes / 1e6:F1} MB after the run ({Percent(memoryRatio - 1)})"));
        // Where a growth sits: the GC's committed heap, or the rest (native allocations, code, stacks).
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  of which the managed heap's committed memory: {afterWarmup.ManagedCommittedBytes / 1e6:F1} MB -> {afterRun.ManagedCommittedBytes / 1e6:F1} MB; the rest: {afterWarmup.NativeBytes / 1e6:F1} MB -> {afterRun.NativeBytes / 1e6:F1} MB; threads: {afterWarmup.Threads} -> {afterRun.Threads}; methods compiled in between: {afterRun.CompiledMethods - afterWarmup.CompiledMethods}"));
        Console.WriteLine($"answers checked: {outcomes.Count(o => o.Plan.Case is not null && o.Problem is null)} valid with the library's tokens, {outcomes.Count(o => o.Plan.Case is null && o.Problem is null)} invalid with their 4xx, {outcomes.Count(o => o.Status >= 500)} 5xx");
        foreach (var problem in problems.Take(10))
        {
            Console.WriteLine($"  wrong: {problem.Plan.Kind} -> {problem.Status}: {problem.Problem}");
        }

        bool memoryHeld = memoryRatio <= 1 + settings.MaxMemoryGrowth;
        if (!memoryHeld)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  wrong: resident memory grew by more than {settings.MaxMemoryGrowth:P0} during the run"));
        }

        if (jsonPath is not null)
        {
            WriteJson(jsonPath, cases, outcomes, seconds, afterWarmup.ResidentBytes, afterRun.ResidentBytes, settings);
        }

        return problems.Count == 0 && memoryHeld ? 0 : 1;
    }

    // Rounded first: a small negative figure that rounds to zero would print as "-+0.0" (the format falls back to its
    // first section and keeps the sign); adding 0.0 turns the -0.0 that Math.Round gives for it into +0.0.
    private static string Percent(double fraction) =>
        (Math.Round(fraction * 100, 1) + 0.0).ToString("+0.0;-0.0", CultureInfo.InvariantCulture) + "%";

    private static string Row(string name, List<double> seconds, double wall) => string.Create(
        CultureInfo.InvariantCulture,
        $"| {name} | {seconds.Count} | {seconds.Count / wall:F1} | {Percentile(seconds, 0.50) * 1000:F0} ms | {Percentile(seconds, 0.95) * 1000:F0} ms |");

    /// <summary>Nearest-rank percentile.</summary>
    private static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];
    }

    /// <summary>
    /// The process's memory once it has settled: the runtime's tiered compilation quiet for a second (methods the
    /// warm-up made hot are recompiled in the background for a while after it), a full, compacting garbage collection,
    /// and the memory kept for reuse (the picture decoder's pools, the C allocator's free pages) given back as the idle
    /// server does by itself
    /// (<see cref="ServerOptions.IdleMemoryRelease"/>). What is left is what the process holds: resident memory, the
    /// part of it that is the GC's committed heap, the thread count (a new thread brings a stack and maybe a malloc
    /// arena), and the methods compiled so far (tiered compilation recompiles methods as they become hot: a heaptrack
    /// trace of one run put nearly all of the native growth between the snapshots in the JIT's own allocations).
    /// </summary>
    private sealed record MemorySnapshot(long ResidentBytes, long ManagedCommittedBytes, int Threads, long CompiledMethods)
    {
        /// <summary>Resident memory that is not the managed heap: native allocations, code, stacks.</summary>
        public long NativeBytes => ResidentBytes - ManagedCommittedBytes;

        public static async Task<MemorySnapshot> TakeSettledAsync()
        {
            var quiet = TimeSpan.FromSeconds(1);
            var deadline = Stopwatch.StartNew();
            long compiled;
            do
            {
                compiled = System.Runtime.JitInfo.GetCompiledMethodCount();
                await Task.Delay(quiet);
            }
            while (System.Runtime.JitInfo.GetCompiledMethodCount() != compiled && deadline.Elapsed < TimeSpan.FromSeconds(30));

            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            NativeHeap.ReleaseFreedMemory();
            using var process = Process.GetCurrentProcess();
            return new MemorySnapshot(Resident(), GC.GetGCMemoryInfo().TotalCommittedBytes, process.Threads.Count, System.Runtime.JitInfo.GetCompiledMethodCount());
        }

        private static long Resident()
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
                }
            }

            return Environment.WorkingSet;
        }
    }

    private static double[] ReadLoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ').Take(3).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (IOException)
        {
            return [double.NaN, double.NaN, double.NaN];
        }
    }

    /// <summary>The mix: valid requests of four kinds over the cases, invalid ones of every kind below, shuffled.</summary>
    private static List<Planned> Plan(List<Case> cases, Settings settings, int count, Random random)
    {
        var plan = new List<Planned>(count);
        int invalidCount = (int)Math.Round(count * settings.InvalidShare);
        var invalid = Invalid(cases[0], settings.MaxTokens);
        for (int i = 0; i < count; i++)
        {
            if (i < invalidCount)
            {
                plan.Add(invalid[i % invalid.Count]);
                continue;
            }

            var chosen = cases[random.Next(cases.Count)];
            plan.Add((i % 4) switch
            {
                0 => new Planned("chat", chosen, 200, () => Chat(chosen.Bodies.Chat)),
                1 => new Planned("chat streamed", chosen, 200, () => Chat(chosen.Bodies.ChatStreamed)),
                2 => new Planned("native multipart", chosen, 200, () => NativeForm(chosen.Bytes, chosen.Prompt, settings.MaxTokens.ToString(CultureInfo.InvariantCulture))),
                _ => new Planned("native JSON", chosen, 200, () => Json("v1/paligemma/generate", chosen.Bodies.NativeJson)),
            });
        }

        // Fisher-Yates with the seeded generator: the same order every run.
        for (int i = plan.Count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (plan[i], plan[j]) = (plan[j], plan[i]);
        }

        return plan;
    }

    private static List<Planned> Invalid(Case sample, int maxTokens)
    {
        string url = "data:image/png;base64," + Convert.ToBase64String(sample.Bytes);
        string Part(string text) => $"{{\"type\": \"text\", \"text\": {JsonSerializer.Serialize(text)}}}";
        string Picture() => $"{{\"type\": \"image_url\", \"image_url\": {{\"url\": \"{url}\"}}}}";
        string Messages(string content) => $"{{\"model\": \"paligemma\", \"messages\": [{content}], \"max_tokens\": {maxTokens}}}";
        string User(params string[] parts) => $"{{\"role\": \"user\", \"content\": [{string.Join(", ", parts)}]}}";
        // Each body once, here (see RequestBodies).
        Func<HttpRequestMessage> ChatBody(string json)
        {
            byte[] body = Encoding.UTF8.GetBytes(json);
            return () => ServeLoadCommand.Chat(body);
        }

        byte[] notPicture = Encoding.ASCII.GetBytes("this is not a picture, only text with a .png name");
        byte[] tooBig = new byte[BodyLimit + 4096];
        return
        [
            new("invalid: no picture", null, 400, ChatBody(Messages(User(Part("caption en"))))),
            new("invalid: two pictures", null, 400, ChatBody(Messages(User(Part("caption en"), Picture(), Picture())))),
            new("invalid: earlier turns", null, 400, ChatBody(Messages($"{User(Part("caption en"), Picture())}, {{\"role\": \"assistant\", \"content\": \"a cat\"}}, {User(Part("caption en"), Picture())}"))),
            new("invalid: an http image_url", null, 400, ChatBody(Messages(User(Part("caption en"), "{\"type\": \"image_url\", \"image_url\": {\"url\": \"http://127.0.0.1/cat.png\"}}")))),
            new("invalid: bad base64", null, 400, ChatBody(Messages(User(Part("caption en"), "{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,@@@not base64@@@\"}}")))),
            new("invalid: max_tokens over the cap", null, 400, ChatBody($"{{\"messages\": [{User(Part("caption en"), Picture())}], \"max_tokens\": {TokensCap + 1}}}")),
            new("invalid: malformed JSON", null, 400, ChatBody("{\"messages\": [")),
            new("invalid: not a picture", null, 400, () => NativeForm(notPicture, "caption en", "8")),
            new("invalid: no prompt", null, 400, () => NativeForm(sample.Bytes, null, "8")),
            new("invalid: text/plain body", null, 415, () => new HttpRequestMessage(HttpMethod.Post, "v1/paligemma/generate") { Content = new StringContent("caption en", Encoding.UTF8, "text/plain") }),
            // Expect: 100-continue, as curl sends for large bodies: the 413 comes before the body is sent. Without it the
            // server's close of the connection (Kestrel does not read an oversized body) may reach the client first.
            new("invalid: body over the limit", null, 413, () => new HttpRequestMessage(HttpMethod.Post, "v1/paligemma/generate") { Content = new ByteArrayContent(tooBig) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } }, Headers = { ExpectContinue = true } }),
            new("invalid: no API key", null, 401, WithoutKey(ChatBody(Messages(User(Part("caption en"), Picture()))))),
            new("invalid: GET on a POST endpoint", null, 405, () => new HttpRequestMessage(HttpMethod.Get, "v1/chat/completions")),
            new("invalid: unknown path", null, 404, () => new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new StringContent("{}", Encoding.UTF8, "application/json") }),
        ];
    }

    private static Func<HttpRequestMessage> WithoutKey(Func<HttpRequestMessage> build) => () =>
    {
        var request = build();
        request.Options.Set(new HttpRequestOptionsKey<bool>("no-key"), true);
        return request;
    };

    private static byte[] ChatJson(byte[] picture, string prompt, int maxTokens, bool stream) => JsonSerializer.SerializeToUtf8Bytes(new
    {
        model = "paligemma",
        messages = new object[]
        {
            new
            {
                role = "user",
                content = new object[]
                {
                    new { type = "text", text = prompt },
                    new { type = "image_url", image_url = new { url = "data:image/png;base64," + Convert.ToBase64String(picture) } },
                },
            },
        },
        max_tokens = maxTokens,
        stream,
        stream_options = stream ? new { include_usage = true } : null,
    });

    private static HttpRequestMessage Chat(byte[] json) => Json("v1/chat/completions", json);

    private static HttpRequestMessage Json(string path, byte[] json) =>
        new(HttpMethod.Post, path) { Content = new ByteArrayContent(json) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" } } } };

    private static HttpRequestMessage NativeForm(byte[] picture, string? prompt, string maxTokens)
    {
        var form = new MultipartFormDataContent { { new ByteArrayContent(picture), "image", "picture.png" }, { new StringContent(maxTokens), "max_tokens" } };
        if (prompt is not null)
        {
            form.Add(new StringContent(prompt), "prompt");
        }

        return new HttpRequestMessage(HttpMethod.Post, "v1/paligemma/generate") { Content = form };
    }

    /// <summary>Sends the plan from <paramref name="clients"/> clients, each with its own connection, taking the next request as it is free.</summary>
    private static async Task<List<Outcome>> SendAllAsync(Uri baseAddress, List<Planned> plan, int clients)
    {
        int next = -1;
        var outcomes = new Outcome[plan.Count];
        var workers = Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 }) { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(2) };
            int index;
            while ((index = Interlocked.Increment(ref next)) < plan.Count)
            {
                outcomes[index] = await SendAsync(http, plan[index]);
            }
        })).ToList();
        await Task.WhenAll(workers);
        return [.. outcomes];
    }

    private static async Task<Outcome> SendAsync(HttpClient http, Planned plan)
    {
        using var request = plan.Build();
        if (!request.Options.TryGetValue(new HttpRequestOptionsKey<bool>("no-key"), out bool noKey) || !noKey)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        }

        var clock = Stopwatch.StartNew();
        int status;
        string body;
        try
        {
            using var response = await http.SendAsync(request);
            status = (int)response.StatusCode;
            body = await response.Content.ReadAsStringAsync();
        }
        catch (HttpRequestException e)
        {
            // The server closed the connection on an oversized body before reading it: no status at all is a failure too.
            return new Outcome(plan, 0, clock.Elapsed.TotalSeconds, $"no answer: {e.Message}");
        }

        double seconds = clock.Elapsed.TotalSeconds;
        return new Outcome(plan, status, seconds, Check(plan, status, body));
    }

    /// <summary>Null when the answer is right: the library's tokens (or text and token count, for chat) for a valid request, the expected 4xx with OpenAI's error shape for an invalid one.</summary>
    private static string? Check(Planned plan, int status, string body)
    {
        if (status != plan.ExpectedStatus)
        {
            return $"expected {plan.ExpectedStatus}: {Truncate(body)}";
        }

        try
        {
            if (plan.Case is not { } expected)
            {
                using var error = JsonDocument.Parse(body);
                return error.RootElement.GetProperty("error").GetProperty("message").GetString() is { Length: > 0 } ? null : "an error without a message";
            }

            var result = expected.Expected;
            switch (plan.Kind)
            {
                case "chat":
                    {
                        using var answer = JsonDocument.Parse(body);
                        string text = answer.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
                        int tokens = answer.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
                        return text == result.Text && tokens == result.Tokens.Count ? null : $"'{text}' ({tokens} tokens), the library: '{result.Text}' ({result.Tokens.Count})";
                    }

                case "chat streamed":
                    {
                        var text = new StringBuilder();
                        int? tokens = null;
                        bool done = false;
                        foreach (string line in body.Split('\n'))
                        {
                            if (!line.StartsWith("data: ", StringComparison.Ordinal))
                            {
                                continue;
                            }

                            string data = line["data: ".Length..];
                            if (data == "[DONE]")
                            {
                                done = true;
                                continue;
                            }

                            using var chunk = JsonDocument.Parse(data);
                            if (chunk.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                            {
                                tokens = usage.GetProperty("completion_tokens").GetInt32();
                            }

                            foreach (var choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
                            {
                                if (choice.GetProperty("delta").TryGetProperty("content", out var content))
                                {
                                    text.Append(content.GetString());
                                }
                            }
                        }

                        return done && text.ToString() == result.Text && tokens == result.Tokens.Count ? null : $"streamed '{text}' ({tokens} tokens, [DONE] {done}), the library: '{result.Text}' ({result.Tokens.Count})";
                    }

                default:
                    {
                        using var answer = JsonDocument.Parse(body);
                        int[] tokens = answer.RootElement.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
                        return tokens.SequenceEqual(result.Tokens) ? null : $"tokens [{string.Join(", ", tokens)}], the library: [{string.Join(", ", result.Tokens)}]";
                    }
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            return $"unreadable answer ({e.Message}): {Truncate(body)}";
        }
    }

    private static string Truncate(string text) => text.Length <= 200 ? text : text[..200] + "...";

    private static void WriteJson(string path, List<Case> cases, List<Outcome> outcomes, double seconds, long afterWarmup, long afterRun, Settings settings)
    {
        var document = new
        {
            clients = settings.Clients,
            requests = outcomes.Count,
            seconds,
            valid = outcomes.Count(o => o.Plan.Case is not null),
            invalid = outcomes.Count(o => o.Plan.Case is null),
            wrong = outcomes.Count(o => o.Problem is not null),
            server_errors = outcomes.Count(o => o.Status >= 500),
            statuses = outcomes.GroupBy(o => o.Status).OrderBy(g => g.Key).ToDictionary(g => g.Key.ToString(CultureInfo.InvariantCulture), g => g.Count()),
            resident_bytes_after_warmup = afterWarmup,
            resident_bytes_after_run = afterRun,
            cases = cases.Select(c => new { picture = Path.GetFileName(c.Picture), prompt = c.Prompt, text = c.Expected.Text, tokens = c.Expected.Tokens }),
        };
        string temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));
        File.Move(temporary, path, overwrite: true);
    }
}
