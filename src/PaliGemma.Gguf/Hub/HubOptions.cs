namespace PaliGemma.Gguf.Hub;

/// <summary>Options of <see cref="HubPuller"/>; every property has a documented default.</summary>
public sealed record HubOptions
{
    /// <summary>The Hub's address. Default: <c>HF_ENDPOINT</c>, else https://huggingface.co.</summary>
    public string Endpoint { get; init; } = DefaultEndpoint();

    /// <summary>
    /// Access token for gated or private repositories. Default: <c>HF_TOKEN</c>, else the file
    /// <c>huggingface-cli login</c> writes (<c>HF_TOKEN_PATH</c>, <c>$HF_HOME/token</c>,
    /// <c>~/.cache/huggingface/token</c>), else none.
    /// </summary>
    public string? Token { get; init; } = DefaultToken();

    /// <summary>Where pulled repositories are kept. Default: <see cref="HubCache.DefaultRoot"/>.</summary>
    public string CacheDirectory { get; init; } = HubCache.DefaultRoot();

    /// <summary>How long a response may send nothing before the download counts as stalled. Default: 60 s.</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How many times an interrupted download is resumed within one call. Default: 3.</summary>
    public int Retries { get; init; } = 3;

    /// <summary>Pause before the first resumption, doubled after each. Default: 1 s.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);

    public static string DefaultEndpoint() =>
        (Environment.GetEnvironmentVariable("HF_ENDPOINT") is { Length: > 0 } endpoint ? endpoint : "https://huggingface.co").TrimEnd('/');

    public static string? DefaultToken()
    {
        if (Environment.GetEnvironmentVariable("HF_TOKEN") is { Length: > 0 } token)
        {
            return token.Trim();
        }

        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string hfHome = Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } h ? h : Path.Combine(home, ".cache", "huggingface");
        string path = Environment.GetEnvironmentVariable("HF_TOKEN_PATH") is { Length: > 0 } p ? p : Path.Combine(hfHome, "token");
        try
        {
            return File.Exists(path) && File.ReadAllText(path).Trim() is { Length: > 0 } stored ? stored : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
