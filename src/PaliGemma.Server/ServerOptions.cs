namespace PaliGemma.Server;

/// <summary>How the server listens and what it accepts; every property has a documented default.</summary>
public sealed record ServerOptions
{
    /// <summary>Address to listen on. Default: 127.0.0.1 (this machine only).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="PaliGemmaServer.BaseAddress"/>). Default: 8080.</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every endpoint but /health and the page's static files needs <c>Authorization: Bearer KEY</c>. Default: null.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Largest request body, in bytes (a picture as base64 is 4/3 of its file). Default: 20 MiB.</summary>
    public long MaxRequestBodyBytes { get; init; } = 20L << 20;

    /// <summary>Pictures declaring more pixels are refused before decoding (decompression bombs). Default: 40 million.</summary>
    public long MaxImagePixels { get; init; } = 40_000_000;

    /// <summary>Most tokens one request may ask for. Default: 1024.</summary>
    public int MaxTokensCap { get; init; } = 1024;

    /// <summary>Tokens generated when a request does not say. Default: 100 (as <c>paligemma run</c>).</summary>
    public int DefaultMaxTokens { get; init; } = 100;

    /// <summary>Requests that may wait behind the running one; more are answered 429 with Retry-After. Default: 16.</summary>
    public int MaxQueuedRequests { get; init; } = 16;

    /// <summary>
    /// How long no generation must be in flight before the server gives the native memory its requests freed back to
    /// the operating system (<see cref="Gguf.Native.NativeHeap.ReleaseFreedMemory"/>: C allocators and the picture
    /// decoder's pool keep it for reuse, so resident memory would stay at its busiest); null: never.
    /// Default: 1 second.
    /// </summary>
    public TimeSpan? IdleMemoryRelease { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The model's name in /v1/models and in answers. Default: null (the text GGUF's file name).</summary>
    public string? ModelName { get; init; }

    /// <summary>Decodes segmentation answers into masks (big_vision's VQ-VAE); without it objects keep their codes only. Default: null.</summary>
    public PaliGemma.Gguf.Segmentation.MaskDecoder? MaskDecoder { get; init; }

    /// <summary>Receives one line per unexpected server error (the client only sees "internal error"). Default: null.</summary>
    public Action<string>? ErrorLog { get; init; }
}
