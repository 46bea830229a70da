using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Net.Sockets;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// A Hugging Face Hub on 127.0.0.1 (HttpListener, two ports) serving checkpoint folders through the endpoints and
/// headers of the real one: <c>/api/models/REPO/revision/REV?blobs=true</c> (siblings with size,
/// blobId and lfs.sha256), <c>/REPO/resolve/REV/PATH</c> answering small files itself (ETag = git
/// blob id, X-Repo-Commit) and redirecting LFS files (X-Linked-Etag = SHA-256, X-Linked-Size) to a
/// storage host on a second port that refuses an Authorization header, as signed storage URLs do;
/// Range requests answered 206; gated repositories answered 401/403 with X-Error-Code: GatedRepo.
/// Faults are injected per file; every request is logged.
/// </summary>
public sealed class FakeHub : IAsyncDisposable
{
    public const string GoodToken = "hf_good_token";

    private readonly HttpListener _hubListener;
    private readonly HttpListener _storageListener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _loops = [];
    private readonly ConcurrentDictionary<string, Repository> _repositories = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Fault> _faults = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<LoggedRequest> _log = new();
    private readonly int _hubPort;
    private readonly int _storagePort;

    private FakeHub()
    {
        (_hubListener, _hubPort) = Listen();
        (_storageListener, _storagePort) = Listen();
        _loops.Add(Task.Run(() => AcceptLoop(_hubListener, _hubPort)));
        _loops.Add(Task.Run(() => AcceptLoop(_storageListener, _storagePort)));
    }

    public enum FaultKind
    {
        /// <summary>Send this many bytes of the file, then drop the connection.</summary>
        DropAfter,

        /// <summary>Send this many bytes, then nothing more (the connection stays open).</summary>
        StallAfter,

        /// <summary>Serve the file with one byte changed at this offset.</summary>
        CorruptAt,
    }

    public sealed record Fault(FaultKind Kind, long Offset, int Times);

    public sealed record LoggedRequest(string Method, string Path, string? Range, bool HasAuthorization, int Port);

    private sealed record Served(string Path, byte[] Bytes, string Sha256, string BlobId, bool Lfs);

    private sealed record Repository(string Name, string Commit, Dictionary<string, Served> Files, bool Gated);

    public string Endpoint => $"http://127.0.0.1:{_hubPort}";

    public IReadOnlyList<LoggedRequest> Requests => _log.ToArray();

    public static Task<FakeHub> StartAsync() => Task.FromResult(new FakeHub());

    /// <summary>An HttpListener on a free loopback port (found by binding port 0; retried if taken meanwhile).</summary>
    private static (HttpListener Listener, int Port) Listen()
    {
        for (int attempt = 0; ; attempt++)
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            try
            {
                listener.Start();
                return (listener, port);
            }
            catch (HttpListenerException) when (attempt < 10)
            {
                listener.Close();
            }
        }
    }

    private async Task AcceptLoop(HttpListener listener, int port)
    {
        while (!_stopping.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _ = Task.Run(async () =>
            {
                try
                {
                    await HandleAsync(context, port);
                    context.Response.Close();
                }
                catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException)
                {
                    // The client went away (a test's timeout or an injected drop).
                }
            });
        }
    }

    /// <summary>Serves every file of <paramref name="folder"/> as repository <paramref name="name"/>; returns its commit hash.</summary>
    public string AddRepository(string name, string folder, bool gated = false)
    {
        var files = new Dictionary<string, Served>(StringComparer.Ordinal);
        foreach (string path in Directory.GetFiles(folder).Order(StringComparer.Ordinal))
        {
            byte[] bytes = File.ReadAllBytes(path);
            string fileName = Path.GetFileName(path);
            // As on the Hub: weights and SentencePiece models are LFS files, JSON is in git.
            bool lfs = !fileName.EndsWith(".json", StringComparison.Ordinal) || bytes.Length > 100_000;
            files[fileName] = new Served(fileName, bytes, Convert.ToHexStringLower(SHA256.HashData(bytes)), GitBlobId(bytes), lfs);
        }

        string commit = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(name + string.Concat(files.Values.Select(f => f.Sha256)))));
        _repositories[name] = new Repository(name, commit, files, gated);
        return commit;
    }

    public void AddFault(string fileName, FaultKind kind, long offset, int times = 1) => _faults[fileName] = new Fault(kind, offset, times);

    public void ClearLog() => _log.Clear();

    private static string GitBlobId(byte[] bytes) =>
        Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {bytes.Length}\0"), .. bytes]));

    private async Task HandleAsync(HttpListenerContext context, int port)
    {
        var request = context.Request;
        string path = Uri.UnescapeDataString(request.Url!.AbsolutePath);
        _log.Enqueue(new LoggedRequest(request.HttpMethod, path, request.Headers["Range"], request.Headers["Authorization"] is not null, port));

        if (port == _storagePort)
        {
            await ServeStorageAsync(context, path);
            return;
        }

        string[] parts = path.Trim('/').Split('/');
        if (parts.Length >= 6 && parts[0] == "api" && parts[1] == "models" && parts[4] == "revision")
        {
            await ServeInfoAsync(context, $"{parts[2]}/{parts[3]}", string.Join('/', parts[5..]));
        }
        else if (parts.Length >= 5 && parts[2] == "resolve")
        {
            await ServeResolveAsync(context, $"{parts[0]}/{parts[1]}", parts[3], string.Join('/', parts[4..]));
        }
        else
        {
            context.Response.StatusCode = 404;
        }
    }

    private async Task ServeInfoAsync(HttpListenerContext context, string name, string revision)
    {
        if (!_repositories.TryGetValue(name, out var repository))
        {
            // The real Hub answers 401 for a repository that does not exist (or is private).
            await Error(context, 401, "RepoNotFound", "Repository not found");
            return;
        }

        if (revision != "main" && revision != repository.Commit)
        {
            await Error(context, 404, "RevisionNotFound", $"Invalid rev id: {revision}");
            return;
        }

        // Metadata of gated repositories is public on the Hub; only their files need access.
        var body = new Dictionary<string, object>
        {
            ["id"] = name,
            ["sha"] = repository.Commit,
            ["gated"] = repository.Gated ? "manual" : false,
            ["siblings"] = repository.Files.Values.Select(f => f.Lfs
                ? new Dictionary<string, object> { ["rfilename"] = f.Path, ["size"] = f.Bytes.Length, ["blobId"] = f.BlobId, ["lfs"] = new Dictionary<string, object> { ["sha256"] = f.Sha256, ["size"] = f.Bytes.Length, ["pointerSize"] = 134 } }
                : new Dictionary<string, object> { ["rfilename"] = f.Path, ["size"] = f.Bytes.Length, ["blobId"] = f.BlobId }).ToList(),
        };
        await WriteText(context, "application/json", JsonSerializer.Serialize(body));
    }

    private async Task ServeResolveAsync(HttpListenerContext context, string name, string revision, string fileName)
    {
        if (!_repositories.TryGetValue(name, out var repository))
        {
            await Error(context, 401, "RepoNotFound", "Repository not found");
            return;
        }

        if (repository.Gated)
        {
            string? token = context.Request.Headers["Authorization"] is { Length: > 7 } a && a.StartsWith("Bearer ", StringComparison.Ordinal) ? a[7..] : null;
            if (token is null)
            {
                await Error(context, 401, "GatedRepo", $"Access to model {name} is restricted. You must have access to it and be authenticated to access it. Please log in.");
                return;
            }

            if (token != GoodToken)
            {
                await Error(context, 403, "GatedRepo", $"Access to model {name} is restricted and you are not in the authorized list. Visit {Endpoint}/{name} to ask for access.");
                return;
            }
        }

        if (revision != "main" && revision != repository.Commit)
        {
            await Error(context, 404, "RevisionNotFound", $"Invalid rev id: {revision}");
            return;
        }

        if (!repository.Files.TryGetValue(fileName, out var file))
        {
            await Error(context, 404, "EntryNotFound", "Entry not found");
            return;
        }

        context.Response.Headers["X-Repo-Commit"] = repository.Commit;
        if (file.Lfs)
        {
            context.Response.Headers["X-Linked-Etag"] = $"\"{file.Sha256}\"";
            context.Response.Headers["X-Linked-Size"] = file.Bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            context.Response.Headers["ETag"] = $"\"{file.BlobId}\"";
            context.Response.Headers["Location"] = $"http://127.0.0.1:{_storagePort}/lfs/{file.Sha256}?file={Uri.EscapeDataString(fileName)}&X-Amz-Signature=fake";
            context.Response.StatusCode = 302;
            return;
        }

        context.Response.Headers["ETag"] = $"\"{file.BlobId}\"";
        await ServeBytesAsync(context, file);
    }

    private async Task ServeStorageAsync(HttpListenerContext context, string path)
    {
        if (context.Request.Headers["Authorization"] is not null)
        {
            // Signed storage URLs refuse a second authentication mechanism.
            context.Response.StatusCode = 400;
            await WriteText(context, "text/plain", "Only one auth mechanism allowed");
            return;
        }

        string sha = path.StartsWith("/lfs/", StringComparison.Ordinal) ? path[5..] : "";
        var file = _repositories.Values.SelectMany(r => r.Files.Values).FirstOrDefault(f => f.Sha256 == sha);
        if (file is null)
        {
            context.Response.StatusCode = 404;
            return;
        }

        await ServeBytesAsync(context, file);
    }

    private async Task ServeBytesAsync(HttpListenerContext context, Served file)
    {
        byte[] bytes = file.Bytes;
        Fault? fault = null;
        if (_faults.TryGetValue(file.Path, out var registered) && registered.Times > 0)
        {
            fault = registered;
            _faults[file.Path] = registered with { Times = registered.Times - 1 };
        }

        if (fault?.Kind == FaultKind.CorruptAt)
        {
            bytes = (byte[])bytes.Clone();
            bytes[fault.Offset] ^= 0x5A;
        }

        long start = 0;
        string range = context.Request.Headers["Range"] ?? "";
        if (range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-') && long.TryParse(range[6..^1], out long from))
        {
            if (from >= bytes.Length)
            {
                context.Response.StatusCode = 416;
                context.Response.Headers["Content-Range"] = $"bytes */{bytes.Length}";
                return;
            }

            start = from;
            context.Response.StatusCode = 206;
            context.Response.Headers["Content-Range"] = $"bytes {start}-{bytes.Length - 1}/{bytes.Length}";
        }

        context.Response.Headers["Accept-Ranges"] = "bytes";
        context.Response.ContentLength64 = bytes.Length - start;
        context.Response.ContentType = "application/octet-stream";
        var body = context.Response.OutputStream;
        if (fault is { Kind: FaultKind.DropAfter or FaultKind.StallAfter })
        {
            int send = (int)Math.Max(0, fault.Offset - start);
            await body.WriteAsync(bytes.AsMemory((int)start, send));
            await body.FlushAsync();
            if (fault.Kind == FaultKind.DropAfter)
            {
                context.Response.Abort();
                throw new IOException("dropped on purpose");
            }

            try
            {
                await Task.Delay(Timeout.Infinite, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
            }

            return;
        }

        await body.WriteAsync(bytes.AsMemory((int)start));
    }

    private static async Task Error(HttpListenerContext context, int status, string code, string message)
    {
        context.Response.StatusCode = status;
        context.Response.Headers["X-Error-Code"] = code;
        context.Response.Headers["X-Error-Message"] = message;
        await WriteText(context, "application/json", JsonSerializer.Serialize(new { error = message }));
    }

    private static async Task WriteText(HttpListenerContext context, string contentType, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        context.Response.ContentType = contentType;
        context.Response.ContentLength64 = bytes.Length;
        await context.Response.OutputStream.WriteAsync(bytes);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _hubListener.Close();
        _storageListener.Close();
        await Task.WhenAll(_loops);
        _stopping.Dispose();
    }
}
