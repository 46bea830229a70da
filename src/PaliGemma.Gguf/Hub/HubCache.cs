namespace PaliGemma.Gguf.Hub;

/// <summary>
/// The cache layout, after the Hugging Face cache's: <c>ROOT/hub/models--OWNER--NAME/</c> holds
/// <c>snapshots/COMMIT/</c> (the verified files, under their repository names, and the converted
/// GGUFs in its <c>gguf/</c>), <c>refs/REVISION</c> (the commit a revision resolved to, written
/// only once every file of that commit is verified) and <c>downloads/</c> (partial downloads, named
/// by checksum, resumed from there; a file reaches its snapshot name only when verified).
/// </summary>
public static class HubCache
{
    /// <summary><c>PALIGEMMA_CACHE</c>, else <c>$XDG_CACHE_HOME/paligemma-gguf</c>, else <c>~/.cache/paligemma-gguf</c>.</summary>
    public static string DefaultRoot()
    {
        if (Environment.GetEnvironmentVariable("PALIGEMMA_CACHE") is { Length: > 0 } explicitRoot)
        {
            return explicitRoot;
        }

        string root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "paligemma-gguf");
    }

    public static string RepositoryFolder(string cacheRoot, HubRepositoryName repository) =>
        Path.Combine(cacheRoot, "hub", $"models--{repository.Owner}--{repository.Name}");

    public static string SnapshotFolder(string cacheRoot, HubRepositoryName repository, string commit) =>
        Path.Combine(RepositoryFolder(cacheRoot, repository), "snapshots", commit);

    public static string DownloadsFolder(string cacheRoot, HubRepositoryName repository) =>
        Path.Combine(RepositoryFolder(cacheRoot, repository), "downloads");

    /// <summary>A revision (branch, tag, commit, <c>refs/pr/1</c>) as a file name under <c>refs/</c>.</summary>
    public static string RefFile(string cacheRoot, HubRepositoryName repository, string revision) =>
        Path.Combine(RepositoryFolder(cacheRoot, repository), "refs", Uri.EscapeDataString(revision));
}
