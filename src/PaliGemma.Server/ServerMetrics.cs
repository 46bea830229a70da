using Prometheus;

namespace PaliGemma.Server;

/// <summary>
/// What /metrics exposes, in a registry of this server's own (several servers in one process, as in
/// the tests, do not mix their counts).
/// </summary>
internal sealed class ServerMetrics
{
    public ServerMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        QueueLength = factory.CreateGauge("paligemma_queue_length", "Generation requests waiting for the model (the running one excluded).");
        Running = factory.CreateGauge("paligemma_requests_running", "Generation requests the model is working on.");
        Requests = factory.CreateCounter("paligemma_requests_total", "Generation requests answered, by endpoint and HTTP status (499: the client went away).", ["endpoint", "status"]);
        GeneratedTokens = factory.CreateCounter("paligemma_generated_tokens_total", "Tokens generated, all requests together.");
        NativeMemoryReleases = factory.CreateCounter("paligemma_native_memory_releases_total", "Times the idle server gave the native memory freed by its requests back to the operating system.");
        PromptTokens = factory.CreateCounter("paligemma_prompt_tokens_total", "Prefix tokens (image, BOS, prompt, newline) processed.");
        DecodeTokensPerSecond = factory.CreateHistogram("paligemma_decode_tokens_per_second", "Decode speed of each finished generation.", new HistogramConfiguration
        {
            Buckets = Histogram.ExponentialBuckets(1, 2, 12),
        });
        Latency = factory.CreateHistogram("paligemma_request_duration_seconds", "Time from a generation request's arrival to its last byte, by endpoint.", new HistogramConfiguration
        {
            LabelNames = ["endpoint"],
            Buckets = Histogram.ExponentialBuckets(0.01, 2, 14),
        });
    }

    public CollectorRegistry Registry { get; }

    public Gauge QueueLength { get; }

    public Gauge Running { get; }

    public Counter Requests { get; }

    public Counter GeneratedTokens { get; }

    public Counter PromptTokens { get; }

    public Counter NativeMemoryReleases { get; }

    public Histogram DecodeTokensPerSecond { get; }

    public Histogram Latency { get; }
}
