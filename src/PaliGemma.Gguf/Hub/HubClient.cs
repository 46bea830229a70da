using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Gguf.Hub;

/// <summary>
/// The Hub's documented HTTP API, as huggingface_hub uses it: <c>GET /api/models/REPO/revision/REV</c>
/// for the file list and <c>GET /REPO/resolve/COMMIT/PATH</c> for each file (LFS files redirect to
/// a storage host; the token is never sent to another host), resumed with <c>Range</c> and
/// verified against the Hub's checksum.
/// </summary>
internal sealed class HubClient : IDisposable
{
    private const int MaxRedirects = 10;

    private readonly HttpClient _http;
    private readonly HubOptions _options;
    private readonly Uri _endpoint;

    public HubClient(HubOptions options)
    {
        _options = options;
        if (!Uri.TryCreate(options.Endpoint.TrimEnd('/') + "/", UriKind.Absolute, out var endpoint) || (endpoint.Scheme != Uri.UriSchemeHttp && endpoint.Scheme != Uri.UriSchemeHttps))
        {
            throw new PaliGemmaException($"HF_ENDPOINT '{TensorNames.ForMessage(options.Endpoint)}' is not an http(s) address");
        }

        _endpoint = endpoint;
        // Redirects are followed by hand so that the token goes only to the Hub itself; no
        // decompression, so that sizes and Range offsets are those of the file.
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = options.ReadTimeout,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("paligemma-gguf", typeof(HubClient).Assembly.GetName().Version?.ToString(3) ?? "0"));
    }

    public string Endpoint => _endpoint.ToString().TrimEnd('/');

    public async Task<HubModelInfo> GetModelInfoAsync(HubRepositoryName repository, string revision, CancellationToken cancellationToken)
    {
        var url = new Uri(_endpoint, $"api/models/{repository}/revision/{Uri.EscapeDataString(revision)}?blobs=true");
        using var response = await SendAsync(url, rangeStart: 0, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw Failure(response, repository, revision, null);
        }

        string json = await WithReadTimeout(ct => response.Content.ReadAsStringAsync(ct), cancellationToken).ConfigureAwait(false);
        try
        {
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 32 });
            var root = document.RootElement;
            string commit = root.TryGetProperty("sha", out var sha) && sha.ValueKind == JsonValueKind.String ? sha.GetString()! : "";
            if (!IsCommitHash(commit))
            {
                throw new PaliGemmaException($"{url}: the Hub's answer has no commit hash (\"sha\")");
            }

            var files = new List<HubFile>();
            if (root.TryGetProperty("siblings", out var siblings) && siblings.ValueKind == JsonValueKind.Array)
            {
                foreach (var sibling in siblings.EnumerateArray())
                {
                    if (sibling.ValueKind != JsonValueKind.Object || !sibling.TryGetProperty("rfilename", out var name) || name.ValueKind != JsonValueKind.String)
                    {
                        continue;
                    }

                    long? size = sibling.TryGetProperty("size", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetInt64() : null;
                    string? blobId = sibling.TryGetProperty("blobId", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString() : null;
                    string? sha256 = null;
                    if (sibling.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                    {
                        sha256 = lfs.TryGetProperty("sha256", out var h) && h.ValueKind == JsonValueKind.String ? h.GetString() : null;
                        size = lfs.TryGetProperty("size", out var ls) && ls.ValueKind == JsonValueKind.Number ? ls.GetInt64() : size;
                    }

                    files.Add(new HubFile(name.GetString()!, size, sha256?.ToLowerInvariant(), blobId?.ToLowerInvariant()));
                }
            }

            bool gated = root.TryGetProperty("gated", out var g) && g.ValueKind == JsonValueKind.String;
            return new HubModelInfo(repository, commit, files, gated);
        }
        catch (JsonException e)
        {
            throw new PaliGemmaException($"{url}: the Hub's answer is not valid JSON: {TensorNames.ForMessage(e.Message)}", e);
        }
    }

    /// <summary>
    /// Downloads <paramref name="file"/> at <paramref name="commit"/> into <paramref name="partPath"/>,
    /// continuing what is already there, and returns once its size and checksum are verified. The
    /// caller renames the part file; a part whose checksum fails is deleted.
    /// </summary>
    public async Task DownloadAsync(HubRepositoryName repository, string commit, HubFile file, string partPath, Action<long, long, long>? progress, CancellationToken cancellationToken)
    {
        var url = new Uri(_endpoint, $"{repository}/resolve/{commit}/{string.Join('/', file.Path.Split('/').Select(Uri.EscapeDataString))}");
        TimeSpan delay = _options.RetryDelay;
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                await DownloadOnceAsync(repository, commit, file, url, partPath, progress, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (IsTransient(e, cancellationToken) && attempt < _options.Retries)
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay *= 2;
            }
            catch (Exception e) when (IsTransient(e, cancellationToken))
            {
                long have = File.Exists(partPath) ? new FileInfo(partPath).Length : 0;
                string why = e is TimeoutException ? e.Message : $"connection lost ({OneLine(e.Message)})";
                throw new PaliGemmaException($"{repository}/{file.Path}: {why} after {have} of {file.Size?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} bytes; run the same command again to resume", e);
            }
        }
    }

    private async Task DownloadOnceAsync(HubRepositoryName repository, string commit, HubFile file, Uri url, string partPath, Action<long, long, long>? progress, CancellationToken cancellationToken)
    {
        // FileShare.None: a second download of the same file (another process) fails instead of interleaving.
        FileStream part;
        try
        {
            part = new FileStream(partPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1 << 16, useAsync: true);
        }
        catch (IOException e)
        {
            throw new PaliGemmaException($"{partPath}: in use (is another pull of {repository} running?): {OneLine(e.Message)}", e);
        }

        using var partOwner = part;
        long have = part.Length;
        if (file.Size is { } expectedSize && have > expectedSize)
        {
            part.SetLength(have = 0);
        }

        using var response = await SendAsync(url, have, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && have > 0 && have == file.Size)
        {
            await VerifyAsync(repository, file, part, partPath, null, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (!response.IsSuccessStatusCode)
        {
            throw Failure(response, repository, commit, file.Path);
        }

        if (response.Headers.TryGetValues("X-Repo-Commit", out var commits) && commits.FirstOrDefault() is { } served && !string.Equals(served, commit, StringComparison.OrdinalIgnoreCase))
        {
            throw new PaliGemmaException($"{repository}/{file.Path}: the Hub served commit {served} when {commit} was asked for");
        }

        if (response.StatusCode == HttpStatusCode.PartialContent)
        {
            long? start = response.Content.Headers.ContentRange?.From;
            if (start != have)
            {
                throw new PaliGemmaException($"{repository}/{file.Path}: asked for bytes from {have}, the Hub sent a range from {start?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"}");
            }
        }
        else
        {
            // A full answer to a range request: the server does not resume; start over.
            part.SetLength(have = 0);
        }

        long total = file.Size ?? (response.Content.Headers.ContentLength is { } length ? have + length : -1);
        long resumedFrom = have;
        part.Position = have;
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        progress?.Invoke(have, total, resumedFrom);
        using (var body = await WithReadTimeout(ct => response.Content.ReadAsStreamAsync(ct), cancellationToken).ConfigureAwait(false))
        {
            byte[] buffer = new byte[1 << 20];
            long lastReport = 0;
            while (true)
            {
                int read = await WithReadTimeout(ct => body.ReadAsync(buffer, ct).AsTask(), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                await part.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                have += read;
                if (total > 0 && have > total)
                {
                    break;
                }

                if (stopwatch.ElapsedMilliseconds - lastReport >= 100)
                {
                    lastReport = stopwatch.ElapsedMilliseconds;
                    progress?.Invoke(have, total, resumedFrom);
                }
            }
        }

        await part.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (total > 0 && have < total)
        {
            // The body ended early without an error (the server closed a keep-alive connection): resumable.
            throw new IOException($"the response ended after {have} of {total} bytes");
        }

        progress?.Invoke(have, total, resumedFrom);
        await VerifyAsync(repository, file, part, partPath, response, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Checks size and checksum of the whole part file; deletes it when they are wrong.</summary>
    private static async Task VerifyAsync(HubRepositoryName repository, HubFile file, FileStream part, string partPath, HttpResponseMessage? response, CancellationToken cancellationToken)
    {
        long length = part.Length;
        string? problem = null;
        if (file.Size is { } size && length != size)
        {
            problem = $"{length} bytes where the Hub lists {size}";
        }
        else
        {
            part.Position = 0;
            if (file.Sha256 is { } sha256)
            {
                string actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(part, cancellationToken).ConfigureAwait(false));
                problem = actual == sha256 ? null : $"SHA-256 {actual} where the Hub lists {sha256}";
            }
            else if ((file.GitBlobId ?? EtagOf(response)) is { } blobId)
            {
                using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
                sha1.AppendData(Encoding.ASCII.GetBytes($"blob {length}\0"));
                byte[] buffer = new byte[1 << 16];
                int read;
                while ((read = await part.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    sha1.AppendData(buffer, 0, read);
                }

                string actual = Convert.ToHexStringLower(sha1.GetHashAndReset());
                problem = actual == blobId ? null : $"git blob id {actual} where the Hub lists {blobId}";
            }
            else
            {
                problem = "the Hub gave no checksum for it";
            }
        }

        if (problem is not null)
        {
            part.Dispose();
            File.Delete(partPath);
            throw new PaliGemmaException($"{repository}/{file.Path}: corrupt download, {problem}; it was deleted, run the same command again");
        }
    }

    /// <summary>A file's ETag is its git blob id (non-LFS files); quotes and weak prefix dropped.</summary>
    private static string? EtagOf(HttpResponseMessage? response)
    {
        string? tag = response?.Headers.ETag?.Tag;
        return tag is null ? null : tag.Trim('"').ToLowerInvariant() is { Length: 40 } id && IsHex(id) ? id : null;
    }

    /// <summary>GET with redirects followed by hand: the token is sent only to the Hub's own host.</summary>
    private async Task<HttpResponseMessage> SendAsync(Uri url, long rangeStart, CancellationToken cancellationToken)
    {
        for (int redirects = 0; ; redirects++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue("identity"));
            if (rangeStart > 0)
            {
                request.Headers.Range = new RangeHeaderValue(rangeStart, null);
            }

            if (_options.Token is { Length: > 0 } token && SameOrigin(url, _endpoint))
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            }

            var response = await WithReadTimeout(ct => _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct), cancellationToken).ConfigureAwait(false);
            int status = (int)response.StatusCode;
            if (status is >= 300 and < 400 && response.Headers.Location is { } location)
            {
                response.Dispose();
                if (redirects >= MaxRedirects)
                {
                    throw new PaliGemmaException($"{url}: more than {MaxRedirects} redirects");
                }

                url = new Uri(url, location);
                continue;
            }

            return response;
        }
    }

    /// <summary>Runs one network step, failing with <see cref="TimeoutException"/> when it sends nothing for <see cref="HubOptions.ReadTimeout"/>.</summary>
    private async Task<T> WithReadTimeout<T>(Func<CancellationToken, Task<T>> step, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ReadTimeout);
        try
        {
            return await step(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"the server sent nothing for {_options.ReadTimeout.TotalSeconds:0.#} s (stalled)");
        }
    }

    private PaliGemmaException Failure(HttpResponseMessage response, HubRepositoryName repository, string revision, string? path)
    {
        string code = response.Headers.TryGetValues("X-Error-Code", out var codes) ? codes.First() : "";
        string serverMessage = response.Headers.TryGetValues("X-Error-Message", out var messages) ? OneLine(messages.First()) : "";
        string page = $"{Endpoint}/{repository}";
        bool hasToken = !string.IsNullOrEmpty(_options.Token);
        string what = path is null ? $"{repository} at {revision}" : $"{repository}/{path}";
        string message = (int)response.StatusCode switch
        {
            401 or 403 when code == "GatedRepo" && !hasToken =>
                $"{repository} is gated: accept its licence at {page} while logged in, then pass a token (--token or HF_TOKEN) from {Endpoint}/settings/tokens",
            401 or 403 when code == "GatedRepo" =>
                $"{repository} is gated and this token has no access: accept the licence at {page} with the account the token belongs to (or use a token with read access)",
            401 when !hasToken => $"{repository} not found on {Endpoint} (if it is private, pass a token: --token or HF_TOKEN)",
            401 => $"{repository} not found on {Endpoint}, or this token cannot read it",
            403 => $"{what}: access refused ({(serverMessage.Length > 0 ? serverMessage : "403 Forbidden")}); check that the token may read {page}",
            404 when code == "RevisionNotFound" => $"{repository}: revision '{TensorNames.ForMessage(revision)}' not found",
            404 when code == "EntryNotFound" || path is not null => $"{what}: not found on the Hub",
            404 => $"{repository} not found on {Endpoint}",
            _ => $"{what}: the Hub answered {(int)response.StatusCode} {response.ReasonPhrase}{(serverMessage.Length > 0 ? $" ({serverMessage})" : "")}",
        };
        return new PaliGemmaException(message);
    }

    private static bool IsTransient(Exception e, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested && e is TimeoutException or HttpRequestException or IOException && e is not PaliGemmaException;

    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase) && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    internal static bool IsCommitHash(string text) => text.Length == 40 && IsHex(text);

    private static bool IsHex(string text) => text.All(char.IsAsciiHexDigit);

    private static string OneLine(string text) => TensorNames.ForMessage(text.ReplaceLineEndings(" "));

    public void Dispose() => _http.Dispose();
}
