using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace PaliGemma.Server;

/// <summary>The web page: three files compiled into the assembly (no build step, nothing read from disk).</summary>
internal static class StaticPage
{
    private static readonly Dictionary<string, (string Resource, string ContentType)> Files = new(StringComparer.Ordinal)
    {
        ["/"] = ("wwwroot/index.html", "text/html; charset=utf-8"),
        ["/app.js"] = ("wwwroot/app.js", "text/javascript; charset=utf-8"),
        ["/app.css"] = ("wwwroot/app.css", "text/css; charset=utf-8"),
    };

    // Scripts and styles from this server only; pictures the user picks are shown from blob: URLs.
    private const string ContentSecurityPolicy = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

    public static bool Serves(PathString path) => path.Value is { } value && Files.ContainsKey(value);

    public static void Map(WebApplication app)
    {
        foreach (var (path, (resource, contentType)) in Files)
        {
            byte[] content = Read(resource);
            app.MapGet(path, (HttpContext context) =>
            {
                context.Response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
                context.Response.Headers.XContentTypeOptions = "nosniff";
                context.Response.Headers.CacheControl = "no-cache";
                return Results.Bytes(content, contentType);
            });
        }
    }

    private static byte[] Read(string resource)
    {
        using var stream = typeof(StaticPage).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"the page's {resource} is not embedded");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
