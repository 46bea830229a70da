namespace PaliGemma.Gguf.Inference;

/// <summary>How llama.cpp computes attention and stores the KV cache.</summary>
public enum Precision
{
    /// <summary>llama.cpp's defaults for the text model: flash attention when available, F16 KV cache. Logits within ~2e-2 of the reference.</summary>
    Fast,

    /// <summary>Flash attention off and an F32 KV cache: logits within ~4e-3 of the reference.</summary>
    Exact,
}

/// <summary>Options for loading a model; every property has a documented default.</summary>
public sealed record ModelOptions
{
    /// <summary>CPU threads. Default: the processor count.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Layers to offload to a GPU when a GPU backend is installed. Default: 0 (CPU only).</summary>
    public int GpuLayers { get; init; }

    /// <summary>Default: <see cref="Precision.Fast"/>.</summary>
    public Precision Precision { get; init; } = Precision.Fast;

    /// <summary>
    /// Memory-map the text model. Default (null): decided per file. Memory mapping keeps F16/Q8_0
    /// weights in the page cache only, but llama.cpp's CPU backend repacks Q4_0/Q4_K/IQ4_NL tensors
    /// into an anonymous copy at load, so mapping those files would hold them twice.
    /// </summary>
    public bool? MemoryMap { get; init; }

    /// <summary>
    /// How many (picture, prompt) answers <see cref="PaliGemmaModel.GenerateBatchAsync"/> decodes together, each under
    /// its own llama.cpp sequence id (<see cref="PaliGemmaModel.GenerateTogetherAsync"/>); 1 answers them one at a
    /// time. The tokens are the same on F32 weights; on quantized weights a near-tie token could differ
    /// (docs/DESIGN.md). Default: 4, what paid on a 2-core CPU (README, Benchmarks, Engine: 1.38x the decode
    /// throughput of one at a time, a batch job 1.22x the bare engine's items per minute against 1.13x with 1),
    /// for a larger compute buffer (about 0.2 GiB more at 224 px).
    /// </summary>
    public int BatchSequences { get; init; } = 4;

    /// <summary>
    /// Never hold the vision tower and the text model in memory together: the vision tower (with only the text
    /// model's vocabulary, which is all mtmd needs of it) encodes pictures and is freed before the text model loads
    /// to answer, and the other way round. Each switch is a load (a batch switches once per chunk of pictures). The
    /// tokens are the same. Default: false (README, Benchmarks: peak memory and speed).
    /// </summary>
    public bool LowMemory { get; init; }

    /// <summary>Images above this many pixels are refused before decoding (decompression bombs). Default: 100 million.</summary>
    public long MaxImagePixels { get; init; } = ImagePreprocessor.DefaultMaxPixels;

    /// <summary>
    /// Turn pictures as their EXIF Orientation tag says before the model sees them, as the reference
    /// (transformers' load_image) does. Default: true. False for pictures whose pixels are already
    /// oriented but still carry the tag.
    /// </summary>
    public bool ApplyExifOrientation { get; init; } = true;

    /// <summary>Receives the text model's loading progress, from 0 to 1. Default: null.</summary>
    public IProgress<float>? LoadProgress { get; init; }

    /// <summary>Receives llama.cpp and mtmd log lines. Default: null (dropped).</summary>
    public Action<string>? NativeLog { get; init; }
}
