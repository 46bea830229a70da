using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace PaliGemma.Server;

/// <summary>A request the server refuses, answered as OpenAI does: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class ApiException(int status, string message, string type = ApiException.InvalidRequest, string? param = null)
    : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";
    public const string Authentication = "authentication_error";
    public const string RateLimit = "rate_limit_error";
    public const string NotFound = "not_found_error";
    public const string ServerError = "server_error";

    public int Status { get; } = status;

    public string Type { get; } = type;

    public string? Param { get; } = param;

    public static ApiException BadRequest(string message, string? param = null) => new(StatusCodes.Status400BadRequest, message, InvalidRequest, param);

    /// <summary>Writes the error body; the caller has not started the response.</summary>
    internal static Task WriteAsync(HttpResponse response, int status, string message, string type, string? param = null)
    {
        response.StatusCode = status;
        response.ContentType = "application/json; charset=utf-8";
        var body = new { error = new { message, type, param, code = (string?)null } };
        return response.WriteAsync(JsonSerializer.Serialize(body, ServerJson.Options));
    }

    /// <summary>The OpenAI type that fits a status the framework chose (404, 405, 413...).</summary>
    internal static string TypeFor(int status) => status switch
    {
        StatusCodes.Status401Unauthorized => Authentication,
        StatusCodes.Status404NotFound => NotFound,
        StatusCodes.Status429TooManyRequests => RateLimit,
        >= 500 => ServerError,
        _ => InvalidRequest,
    };
}
