using PaliGemma.Gguf.Hub;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Hub;

/// <summary>
/// <see cref="HubPuller"/> against <see cref="FakeHub"/> on 127.0.0.1 serving the golden
/// checkpoints: downloads verified byte for byte, resumed with Range after a dropped connection,
/// corrupt files caught and removed, stalls timed out, gated repositories explained, and never a
/// file under its final name (or a ref) before it is complete and verified. No test touches the network.
/// </summary>
public sealed class HubPullTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Repository = "google/tiny-paligemma-224";
    private const string Shard = "model-00001-of-00002.safetensors";
    private static readonly HubRepositoryName Name = HubRepositoryName.TryParse(Repository)!;

    private FakeHub _hub = null!;
    private string _commit = "";
    private string _cache = "";

    private static string GoldenFolder => GoldenData.Model("tiny-paligemma-224").Directory;

    public async Task InitializeAsync()
    {
        _hub = await FakeHub.StartAsync();
        _commit = _hub.AddRepository(Repository, GoldenFolder);
        _cache = TestModels.NewFolder("hub-cache");
    }

    public async Task DisposeAsync() => await _hub.DisposeAsync();

    private HubOptions Options(int retries = 0, string? token = null, double readTimeoutSeconds = 20) => new()
    {
        Endpoint = _hub.Endpoint,
        Token = token,
        CacheDirectory = _cache,
        Retries = retries,
        RetryDelay = TimeSpan.FromMilliseconds(10),
        ReadTimeout = TimeSpan.FromSeconds(readTimeoutSeconds),
    };

    private string SnapshotFile(string file) => Path.Combine(HubCache.SnapshotFolder(_cache, Name, _commit), file);

    private string[] PartFiles() => Directory.Exists(HubCache.DownloadsFolder(_cache, Name)) ? Directory.GetFiles(HubCache.DownloadsFolder(_cache, Name)) : [];

    [Fact]
    public async Task PullFetchesWhatConversionNeedsVerifiedAndSendsTheTokenOnlyToTheHub()
    {
        Assert.Null(HubPuller.FindCached(Name, "main", _cache));
        var snapshot = await HubPuller.PullAsync(Name, "main", Options(token: "hf_any"));

        Assert.Equal(_commit, snapshot.Commit);
        foreach (string file in Directory.GetFiles(GoldenFolder))
        {
            Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(Path.Combine(snapshot.Directory, Path.GetFileName(file))));
        }

        Assert.Empty(PartFiles());
        Assert.Equal(snapshot, HubPuller.FindCached(Name, "main", _cache));
        // The LFS files came from the storage host, which refuses a token: it was not forwarded.
        var storage = _hub.Requests.Where(r => r.Path.StartsWith("/lfs/", StringComparison.Ordinal)).ToList();
        Assert.Equal(4, storage.Count);
        Assert.All(storage, r => Assert.False(r.HasAuthorization));
        Assert.All(_hub.Requests.Where(r => r.Path.Contains("/resolve/", StringComparison.Ordinal)), r => Assert.True(r.HasAuthorization));
        // Files are asked for by commit, never by branch name (what a branch points to may move mid-pull).
        Assert.All(_hub.Requests.Where(r => r.Path.Contains("/resolve/", StringComparison.Ordinal)), r => Assert.Contains($"/resolve/{_commit}/", r.Path, StringComparison.Ordinal));
    }

    [Fact]
    public async Task DroppedConnectionFailsCleanlyAndTheNextCallResumesWithRange()
    {
        const long DropAt = 500_000;
        _hub.AddFault(Shard, FakeHub.FaultKind.DropAfter, DropAt);

        var error = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(Name, "main", Options(retries: 0)));
        output.WriteLine(error.Message);
        Assert.Contains("run the same command again to resume", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(SnapshotFile(Shard)));
        Assert.Null(HubPuller.FindCached(Name, "main", _cache));
        Assert.Equal(DropAt, new FileInfo(Assert.Single(PartFiles())).Length);

        _hub.ClearLog();
        await HubPuller.PullAsync(Name, "main", Options(retries: 0));
        var ranges = _hub.Requests.Where(r => r.Path.StartsWith("/lfs/", StringComparison.Ordinal) && r.Range is not null).Select(r => r.Range).ToList();
        Assert.Equal([$"bytes={DropAt}-"], ranges);
        Assert.Equal(File.ReadAllBytes(Path.Combine(GoldenFolder, Shard)), File.ReadAllBytes(SnapshotFile(Shard)));
        Assert.Empty(PartFiles());
        // What the first call had verified was not asked for again.
        Assert.DoesNotContain(_hub.Requests, r => r.Path.EndsWith("/config.json", StringComparison.Ordinal));
    }

    [Fact]
    public async Task OneCallResumesItselfAfterADrop()
    {
        _hub.AddFault(Shard, FakeHub.FaultKind.DropAfter, 300_000, times: 2);
        await HubPuller.PullAsync(Name, "main", Options(retries: 2));
        Assert.Equal(File.ReadAllBytes(Path.Combine(GoldenFolder, Shard)), File.ReadAllBytes(SnapshotFile(Shard)));
        Assert.Equal(2, _hub.Requests.Count(r => r.Path.StartsWith("/lfs/", StringComparison.Ordinal) && r.Range == "bytes=300000-"));
    }

    [Fact]
    public async Task CorruptFileIsCaughtByItsChecksumAndRemoved()
    {
        _hub.AddFault(Shard, FakeHub.FaultKind.CorruptAt, 123_456);
        var error = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(Name, "main", Options()));
        output.WriteLine(error.Message);
        Assert.Contains($"{Repository}/{Shard}: corrupt download, SHA-256", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(SnapshotFile(Shard)));
        Assert.Empty(PartFiles());
        Assert.Null(HubPuller.FindCached(Name, "main", _cache));

        await HubPuller.PullAsync(Name, "main", Options());
        Assert.Equal(File.ReadAllBytes(Path.Combine(GoldenFolder, Shard)), File.ReadAllBytes(SnapshotFile(Shard)));
    }

    [Fact]
    public async Task CorruptSmallFileIsCaughtByItsGitBlobId()
    {
        _hub.AddFault("config.json", FakeHub.FaultKind.CorruptAt, 10);
        var error = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(Name, "main", Options()));
        Assert.Contains("config.json: corrupt download, git blob id", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(SnapshotFile("config.json")));
    }

    [Fact]
    public async Task StalledServerTimesOutWithAClearError()
    {
        _hub.AddFault(Shard, FakeHub.FaultKind.StallAfter, 200_000);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(Name, "main", Options(readTimeoutSeconds: 1)));
        output.WriteLine($"{error.Message} ({watch.Elapsed.TotalSeconds:F1} s)");
        Assert.Contains(": the server sent nothing for 1 s (stalled) after 200000 of", error.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"took {watch.Elapsed}");
        Assert.False(File.Exists(SnapshotFile(Shard)));

        await HubPuller.PullAsync(Name, "main", Options());
        Assert.Equal(File.ReadAllBytes(Path.Combine(GoldenFolder, Shard)), File.ReadAllBytes(SnapshotFile(Shard)));
    }

    [Fact]
    public async Task GatedRepositorySaysWhatToDo()
    {
        _hub.AddRepository("google/gated-tiny", GoldenFolder, gated: true);
        var gated = HubRepositoryName.TryParse("google/gated-tiny")!;

        var anonymous = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(gated, "main", Options()));
        output.WriteLine(anonymous.Message);
        Assert.Equal($"google/gated-tiny is gated: accept its licence at {_hub.Endpoint}/google/gated-tiny while logged in, then pass a token (--token or HF_TOKEN) from {_hub.Endpoint}/settings/tokens", anonymous.Message);

        var refused = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(gated, "main", Options(token: "hf_not_accepted")));
        output.WriteLine(refused.Message);
        Assert.StartsWith($"google/gated-tiny is gated and this token has no access: accept the licence at {_hub.Endpoint}/google/gated-tiny", refused.Message, StringComparison.Ordinal);
        Assert.Empty(PartFiles());

        var snapshot = await HubPuller.PullAsync(gated, "main", Options(token: FakeHub.GoodToken));
        Assert.True(File.Exists(Path.Combine(snapshot.Directory, Shard)));
    }

    [Fact]
    public async Task UnknownRepositoryAndRevisionAreNamed()
    {
        var missing = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(HubRepositoryName.TryParse("google/nothing-here")!, "main", Options()));
        Assert.Equal($"google/nothing-here not found on {_hub.Endpoint} (if it is private, pass a token: --token or HF_TOKEN)", missing.Message);
        var revision = await Assert.ThrowsAsync<PaliGemmaException>(() => HubPuller.PullAsync(Name, "v9", Options()));
        Assert.Equal($"{Repository}: revision 'v9' not found", revision.Message);
    }

    [Theory]
    [InlineData("google/paligemma2-3b-mix-224", true)]
    [InlineData("a/b", true)]
    [InlineData("google/paligemma2-3b-mix-224.gguf", false)]
    [InlineData("../x", false)]
    [InlineData("a/b/c", false)]
    [InlineData("/abs/path", false)]
    [InlineData("just-a-name", false)]
    public void HubNamesAreTellApartFromPaths(string value, bool isHub) => Assert.Equal(isHub, HubRepositoryName.IsHubReference(value));
}
