namespace PaliGemma.Gguf.Hub;

/// <summary>
/// A file of a Hub repository at one commit, as the model info endpoint lists it (with
/// <c>blobs=true</c>): its size and checksum. LFS files (weights, tokenizer.model) are checked by
/// SHA-256, the others by their git blob id (SHA-1 of "blob SIZE\0" + content).
/// </summary>
public sealed record HubFile(string Path, long? Size, string? Sha256, string? GitBlobId)
{
    public bool IsLfs => Sha256 is not null;
}

/// <summary>What the model info endpoint says about a repository at a revision.</summary>
public sealed record HubModelInfo(HubRepositoryName Repository, string Commit, IReadOnlyList<HubFile> Files, bool Gated);
