using System.Net;
using System.Text;
using System.Text.Json;
using PaliGemma.Gguf.Tests.Inference;
using Xunit;
using Xunit.Abstractions;
using static PaliGemma.Gguf.Tests.Server.ChatCompletionsTests;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>What the server refuses, and how: a 4xx with OpenAI's error object that says why, never a stack trace.</summary>
public sealed class ServerRefusalTests(ServedModel served, ITestOutputHelper output) : IClassFixture<ServedModel>
{
    public static TheoryData<string, string, int, string> Refusals() => new()
    {
        { "no picture (string content)", ChatBody("\"caption en\""), 400, "no picture" },
        { "no picture (parts)", ChatBody(PictureParts(0, "caption en")), 400, "no picture" },
        { "two pictures", ChatBody(PictureParts(2, "caption en")), 400, "2 pictures: PaliGemma takes exactly one" },
        { "earlier turns", $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}, {{\"role\": \"assistant\", \"content\": \"hello\"}}, {{\"role\": \"user\", \"content\": {PictureParts(1, "caption en")}}}]}}", 400, "no chat template" },
        { "a system message", $"{{\"messages\": [{{\"role\": \"system\", \"content\": \"be nice\"}}, {{\"role\": \"user\", \"content\": {PictureParts(1, "caption en")}}}]}}", 400, "no chat template" },
        { "last message not the user's", "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}", 400, "must have role \"user\"" },
        { "unsupported content", ChatBody("[{\"type\": \"input_audio\", \"input_audio\": {\"data\": \"AAAA\", \"format\": \"wav\"}}]"), 400, "unsupported content part type 'input_audio'" },
        { "two text parts", ChatBody("[{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]"), 400, "one text part" },
        { "a network URL", ChatBody("[{\"type\": \"text\", \"text\": \"caption en\"}, {\"type\": \"image_url\", \"image_url\": {\"url\": \"http://169.254.169.254/latest\"}}]"), 400, "this server fetches nothing" },
        { "a file URL", ChatBody("[{\"type\": \"text\", \"text\": \"caption en\"}, {\"type\": \"image_url\", \"image_url\": {\"url\": \"file:///etc/passwd\"}}]"), 400, "this server fetches nothing" },
        { "bad base64", ChatBody("[{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,@@@@\"}}]"), 400, "not valid base64" },
        { "not a picture", ChatBody("[{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,aGVsbG8gd29ybGQ=\"}}]"), 400, "the picture" },
        { "max_tokens above the cap", ChatBody(PictureParts(1, "caption en"), ", \"max_tokens\": 2001"), 400, "above this server's cap of 2000" },
        { "max_tokens zero", ChatBody(PictureParts(1, "caption en"), ", \"max_tokens\": 0"), 400, "max_tokens must be an integer from 1" },
        { "temperature out of range", ChatBody(PictureParts(1, "caption en"), ", \"temperature\": -1"), 400, "temperature must be a number from 0 to 2" },
        { "top_p out of range", ChatBody(PictureParts(1, "caption en"), ", \"top_p\": 1.5"), 400, "top_p must be a number from 0 to 1" },
        { "negative seed", ChatBody(PictureParts(1, "caption en"), ", \"seed\": -3"), 400, "seed must be from 0" },
        { "n above 1", ChatBody(PictureParts(1, "caption en"), ", \"n\": 2"), 400, "n must be 1" },
        { "tools", ChatBody(PictureParts(1, "caption en"), ", \"tools\": [{\"type\": \"function\"}]"), 400, "tools is not supported" },
        { "stop strings", ChatBody(PictureParts(1, "caption en"), ", \"stop\": [\"x\"]"), 400, "stop is not supported" },
        { "not JSON", "{\"messages\": [", 400, "not valid JSON" },
        { "not an object", "[1, 2]", 400, "must be a JSON object" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_bad_chat_request_gets_a_4xx_that_says_why(string what, string body, int status, string message)
    {
        using var client = served.Client();
        using var response = await client.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));

        string error = await AssertOpenAIErrorAsync(response, status);
        output.WriteLine($"{what}: {(int)response.StatusCode} {error}");
        Assert.Contains(message, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_picture_declaring_too_many_pixels_is_refused_before_decoding()
    {
        string url = "data:image/png;base64," + Convert.ToBase64String(ImagePreprocessorTests.PngDeclaring(40_000, 40_000));
        string body = ChatBody($"[{{\"type\": \"text\", \"text\": \"caption en\"}}, {{\"type\": \"image_url\", \"image_url\": {{\"url\": \"{url}\"}}}}]");
        using var client = served.Client();
        using var response = await client.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));

        string error = await AssertOpenAIErrorAsync(response, 400);
        output.WriteLine(error);
        Assert.Contains("40000 x 40000", error, StringComparison.Ordinal);
        Assert.Contains("pixel budget", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_body_above_the_limit_is_a_413()
    {
        string body = ChatBody($"[{{\"type\": \"text\", \"text\": \"{new string('a', (int)served.Options.MaxRequestBodyBytes + 10)}\"}}]");
        using var client = served.Client();
        // Kestrel answers 413 from Content-Length and closes the connection without reading the body, so a client
        // that writes the whole body before reading may see the connection reset instead (this test did, now and
        // then). Expect: 100-continue, which curl sends for large bodies, gets the 413 before the body is sent.
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.ExpectContinue = true;
        using var response = await client.SendAsync(request);

        string error = await AssertOpenAIErrorAsync(response, 413);
        Assert.Contains($"limit of {served.Options.MaxRequestBodyBytes} bytes", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("v1/chat/completions", "POST")]
    [InlineData("v1/paligemma/generate", "POST")]
    [InlineData("v1/models", "GET")]
    [InlineData("metrics", "GET")]
    public async Task Without_the_key_every_endpoint_but_health_is_a_401(string path, string method)
    {
        using var client = served.Client(withKey: false);
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = method == "POST" ? new StringContent("{}", Encoding.UTF8, "application/json") : null };
        using var response = await client.SendAsync(request);

        await AssertOpenAIErrorAsync(response, 401);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);

        using var wrong = new HttpRequestMessage(new HttpMethod(method), path) { Content = request.Content is null ? null : new StringContent("{}", Encoding.UTF8, "application/json") };
        wrong.Headers.Authorization = new("Bearer", ServedModel.ApiKey + "x");
        using var wrongResponse = await client.SendAsync(wrong);
        await AssertOpenAIErrorAsync(wrongResponse, 401);
    }

    [Fact]
    public async Task Health_needs_no_key()
    {
        using var client = served.Client(withKey: false);
        using var response = await client.GetAsync("health");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var health = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());
    }

    [Theory]
    [InlineData("GET", "v1/chat/completions", 405)]
    [InlineData("GET", "v1/nothing", 404)]
    public async Task Unknown_routes_and_methods_answer_in_the_same_shape(string method, string path, int status)
    {
        using var client = served.Client();
        using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));

        await AssertOpenAIErrorAsync(response, status);
    }

    /// <summary>The status, and a body that is exactly OpenAI's error object; returns its message.</summary>
    internal static async Task<string> AssertOpenAIErrorAsync(HttpResponseMessage response, int status)
    {
        string body = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {body}");
        Assert.StartsWith("application/json", response.Content.Headers.ContentType?.ToString() ?? "", StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
        using var document = JsonDocument.Parse(body);
        var error = document.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("type").GetString()));
        return error.GetProperty("message").GetString()!;
    }
}
