using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PaliGemma.Gguf;
using PaliGemma.Gguf.Inference;
using Prometheus;

namespace PaliGemma.Server;

/// <summary>
/// An HTTP server over one loaded <see cref="PaliGemmaModel"/> (Kestrel, ASP.NET Core): OpenAI's
/// chat completions, the native generate endpoint, /v1/models, /health, /metrics and the web page.
/// It keeps no state between requests, so several instances can stand behind a load balancer.
/// The model stays the caller's: disposing the server does not dispose it.
/// </summary>
public sealed class PaliGemmaServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ServerContext _context;

    private PaliGemmaServer(WebApplication app, ServerContext context, Uri baseAddress)
    {
        _app = app;
        _context = context;
        BaseAddress = baseAddress;
    }

    /// <summary>Where the server listens, with the real port when <see cref="ServerOptions.Port"/> was 0.</summary>
    public Uri BaseAddress { get; }

    /// <summary>Starts listening; returns once the port is bound.</summary>
    public static async Task<PaliGemmaServer> StartAsync(PaliGemmaModel model, ServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new ServerOptions();
        Validate(options);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { EnvironmentName = Environments.Production, ApplicationName = typeof(PaliGemmaServer).Assembly.GetName().Name });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.Listen(ParseHost(options.Host), options.Port);
        });
        builder.Services.Configure<Microsoft.AspNetCore.Http.Features.FormOptions>(form =>
        {
            form.MultipartBodyLengthLimit = options.MaxRequestBodyBytes;
            form.ValueCountLimit = 64;
        });

        var app = builder.Build();
        var server = new ServerContext(model, options);
        var chat = new ChatCompletionsEndpoint(server);
        var generate = new NativeGenerateEndpoint(server);

        app.UseStatusCodePages(async context =>
        {
            // The framework's own refusals (404, 405, 413...) in the same JSON shape as ours.
            var response = context.HttpContext.Response;
            string message = response.StatusCode switch
            {
                StatusCodes.Status404NotFound => $"no such endpoint: {context.HttpContext.Request.Method} {context.HttpContext.Request.Path}",
                StatusCodes.Status405MethodNotAllowed => $"{context.HttpContext.Request.Method} is not allowed on {context.HttpContext.Request.Path}",
                _ => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(response.StatusCode),
            };
            await ApiException.WriteAsync(response, response.StatusCode, message, ApiException.TypeFor(response.StatusCode));
        });
        app.Use(async (context, next) =>
        {
            if (options.ApiKey is { } key && NeedsKey(context.Request.Path) && !HasKey(context.Request, key))
            {
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await ApiException.WriteAsync(context.Response, StatusCodes.Status401Unauthorized, "missing or wrong API key: send Authorization: Bearer KEY", ApiException.Authentication);
                return;
            }

            await next(context);
        });

        app.MapPost("/v1/chat/completions", context => server.GuardAsync(context, ChatCompletionsEndpoint.Name, chat.HandleAsync));
        app.MapPost("/v1/paligemma/generate", context => server.GuardAsync(context, NativeGenerateEndpoint.Name, generate.HandleAsync));
        app.MapGet("/v1/models", () => Results.Json(
            new
            {
                @object = "list",
                data = new[]
                {
                    new { id = server.ModelName, @object = "model", created = new DateTimeOffset(File.GetLastWriteTimeUtc(model.TextModelPath)).ToUnixTimeSeconds(), owned_by = "paligemma-gguf", image_size = model.ImageSize, context_length = model.ContextLength },
                },
            },
            ServerJson.Options));
        app.MapGet("/health", () => Results.Json(new { status = "ok", model = server.ModelName, queued = server.Queue.Waiting }, ServerJson.Options));
        app.MapMetrics("/metrics", server.Metrics.Registry);
        StaticPage.Map(app);

        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException e)
        {
            await app.DisposeAsync();
            server.Dispose();
            throw new PaliGemmaException($"cannot listen on {options.Host}:{options.Port}: {e.Message.ReplaceLineEndings(" ")}", e);
        }

        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new PaliGemmaServer(app, server, new Uri(address.Replace("[::]", "localhost", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal) + "/"));
    }

    /// <summary>Completes when the server stops (see <see cref="StopAsync"/>) or <paramref name="cancellationToken"/> is cancelled.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _context.Dispose();
    }

    private static void Validate(ServerOptions options)
    {
        if (options.Port is < 0 or > 65535)
        {
            throw new PaliGemmaException($"port must be from 0 to 65535, not {options.Port}");
        }

        if (options.ApiKey is { Length: 0 })
        {
            throw new PaliGemmaException("the API key is empty");
        }

        if (options.MaxRequestBodyBytes < 1024 || options.MaxTokensCap < 1 || options.MaxQueuedRequests < 0 || options.MaxImagePixels < 1 || options.DefaultMaxTokens < 1)
        {
            throw new PaliGemmaException("server limits must be positive (body >= 1024 bytes, max tokens >= 1, queue >= 0)");
        }

        if (options.IdleMemoryRelease is { } idle && (idle < TimeSpan.Zero || idle > TimeSpan.FromDays(1)))
        {
            throw new PaliGemmaException($"the idle time before memory is released must be from 0 to 24 hours, not {idle}");
        }
    }

    private static IPAddress ParseHost(string host)
    {
        if (host is "localhost")
        {
            return IPAddress.Loopback;
        }

        return IPAddress.TryParse(host, out var address)
            ? address
            : throw new PaliGemmaException($"host must be an IP address (127.0.0.1, 0.0.0.0, ::1...), not '{host}'");
    }

    /// <summary>The readiness probe and the page's static files are open; everything that reaches the model or its numbers is not.</summary>
    private static bool NeedsKey(PathString path) => !(path == "/health" || StaticPage.Serves(path));

    private static bool HasKey(HttpRequest request, string key)
    {
        string header = request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        // Hash both sides so the comparison takes the same time whatever the lengths and contents.
        byte[] given = SHA256.HashData(Encoding.UTF8.GetBytes(header[Scheme.Length..].Trim()));
        byte[] expected = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        return CryptographicOperations.FixedTimeEquals(given, expected);
    }
}
