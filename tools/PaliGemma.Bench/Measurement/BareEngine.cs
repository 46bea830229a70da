using System.Diagnostics;
using System.Runtime.InteropServices;
using LLama;
using LLama.Common;
using LLama.Native;
using LLama.Sampling;

namespace PaliGemma.Bench.Measurement;

/// <summary>
/// The same work as <c>paligemma run</c> straight on LLamaSharp and the llama.cpp natives, with no
/// product code in between: the yardstick the product is compared with. Load the two files, encode
/// one S x S picture with mtmd, decode a prefix of image-plus-text rows as one non-causal embeddings
/// batch, then decode tokens one by one with greedy sampling. The settings the product chooses (the
/// vision encoder's flash attention, memory mapping) are parameters, so that the comparison is made
/// with the product's choices and each choice can be measured on its own.
/// </summary>
internal static class BareEngine
{
    public sealed record Result(double LoadMs, double ImageEncodeMs, double PrefillMs, double DecodeTokensPerSecond, long PeakRssBytes);

    public static Result Run(string textModel, string mmproj, int threads, int textRows, int tokens, bool memoryMap, LLamaFlashAttentionType encoderFlashAttention)
    {
        using var session = new Session(textModel, mmproj, threads, memoryMap, encoderFlashAttention);
        int size = (int)GgufKeys.ImageSize(mmproj);
        var rgb = new byte[size * size * 3];
        new Random(1).NextBytes(rgb);
        using var bitmap = SafeMtmdEmbed.FromRgbBytes((uint)size, (uint)size, rgb)!;
        var answer = session.Answer(bitmap, textRows, tokens);
        return new Result(session.LoadMs, answer.ImageEncodeMs, answer.PrefillMs, answer.DecodeTokensPerSecond, PaliGemma.Cli.Shared.ProcessMemory.PeakResidentBytes() ?? 0);
    }

    /// <summary>One request's phases.</summary>
    public sealed record Answered(double ImageEncodeMs, double PrefillMs, double DecodeTokensPerSecond);

    /// <summary>The two files loaded once, answering requests one at a time, each from scratch (encode, context, prefill, decode).</summary>
    public sealed class Session : IDisposable
    {
        private readonly LLamaWeights _weights;
        private readonly MtmdWeights _mtmd;
        private readonly string _textModel;
        private readonly int _threads;

        public Session(string textModel, string mmproj, int threads, bool memoryMap, LLamaFlashAttentionType encoderFlashAttention)
        {
            NativeLibraryConfig.All.WithLogCallback((_, _) => { });
            NativeApi.llama_empty_call();
            _ = NativeApi.MtmdDefaultMarker(); // loads libmtmd
            mtmd_log_set(Silence, IntPtr.Zero);
            _textModel = textModel;
            _threads = threads;
            var clock = Stopwatch.StartNew();
            var parameters = new ModelParams(textModel)
            {
                LoadMode = memoryMap ? LLamaLoadMode.MemoryMap : LLamaLoadMode.None,
                Threads = threads,
                BatchThreads = threads,
            };
            _weights = LLamaWeights.LoadFromFile(parameters);
            var mtmdParameters = MtmdContextParams.Default();
            mtmdParameters.NThreads = threads;
            mtmdParameters.PrintTimings = false;
            mtmdParameters.FlashAttentionType = encoderFlashAttention;
            _mtmd = MtmdWeights.LoadFromFile(mmproj, _weights, mtmdParameters);
            LoadMs = clock.Elapsed.TotalMilliseconds;
        }

        public double LoadMs { get; }

        /// <summary>A picture file as mtmd's own helper decodes and sizes it (stb_image and mtmd's resize: no product code).</summary>
        public SafeMtmdEmbed Picture(string path) =>
            SafeMtmdEmbed.FromMediaFile(_mtmd.NativeHandle, path) ?? throw new InvalidOperationException($"mtmd could not read {path}");

        public Answered Answer(SafeMtmdEmbed bitmap, int textRows, int tokens)
        {
            _mtmd.Tokenize("<__media__>", false, true, [bitmap], out var chunks);
            using (chunks)
            {
                var chunk = chunks!.Enumerate().First(c => c.Type == SafeMtmdInputChunk.SafeMtmdInputChunkType.Image);
                int imageRows = (int)chunk.NTokens;
                int embedding = _weights.EmbeddingSize;
                int prefix = imageRows + textRows;

                var clock = Stopwatch.StartNew();
                IntPtr context = _mtmd.NativeHandle.DangerousGetHandle();
                if (mtmd_encode_chunk(context, chunk.NativePtr) != 0)
                {
                    throw new InvalidOperationException("mtmd_encode_chunk failed");
                }

                var rows = new float[prefix * embedding];
                unsafe
                {
                    new ReadOnlySpan<float>(mtmd_get_output_embd(context), imageRows * embedding).CopyTo(rows);
                }

                double encodeMs = clock.Elapsed.TotalMilliseconds;
                for (int i = imageRows * embedding; i < rows.Length; i++)
                {
                    rows[i] = 0.01f * (i % 7);
                }

                using var llama = _weights.CreateContext(new ModelParams(_textModel)
                {
                    ContextSize = (uint)(prefix + tokens),
                    BatchSize = (uint)prefix,
                    UBatchSize = (uint)prefix,
                    Threads = _threads,
                    BatchThreads = _threads,
                });
                var batch = new LLamaBatchEmbeddings(embedding);
                for (int i = 0; i < prefix; i++)
                {
                    batch.Add(rows.AsSpan(i * embedding, embedding), i, LLamaSeqId.Zero, i == prefix - 1);
                }

                clock.Restart();
                llama.NativeHandle.SetCausalAttention(false);
                Check(llama.Decode(batch));
                llama.NativeHandle.SetCausalAttention(true);
                double prefillMs = clock.Elapsed.TotalMilliseconds;

                using var sampler = new GreedySamplingPipeline();
                var token = sampler.Sample(llama.NativeHandle, prefix - 1);
                var single = new LLamaBatch();
                clock.Restart();
                for (int i = 0; i < tokens; i++)
                {
                    single.Clear();
                    single.Add(token, prefix + i, LLamaSeqId.Zero, true);
                    Check(llama.Decode(single));
                    token = sampler.Sample(llama.NativeHandle, 0);
                }

                return new Answered(encodeMs, prefillMs, tokens / clock.Elapsed.TotalSeconds);
            }
        }

        public void Dispose()
        {
            _mtmd.Dispose();
            _weights.Dispose();
        }
    }

    private static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok)
        {
            throw new InvalidOperationException($"llama_decode: {result}");
        }
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void LogCallback(int level, IntPtr text, IntPtr userData);

    private static readonly LogCallback Silence = (_, _, _) => { };

    [DllImport("mtmd", CallingConvention = CallingConvention.Cdecl)]
    private static extern void mtmd_log_set(LogCallback callback, IntPtr userData);

    [DllImport("mtmd", CallingConvention = CallingConvention.Cdecl)]
    private static extern int mtmd_encode_chunk(IntPtr context, IntPtr chunk);

    [DllImport("mtmd", CallingConvention = CallingConvention.Cdecl)]
    private static extern unsafe float* mtmd_get_output_embd(IntPtr context);

    static BareEngine()
    {
        NativeLibrary.SetDllImportResolver(typeof(BareEngine).Assembly, (name, _, _) =>
            name == "mtmd" && NativeLibrary.TryLoad("libmtmd.so", out IntPtr handle) ? handle : IntPtr.Zero);
    }
}
