using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary><c>paligemma serve</c> as a user starts it: a child process on a free port, stopped with SIGTERM.</summary>
public sealed partial class ServeCommandTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Serve_listens_on_loopback_answers_and_stops_cleanly_on_SIGTERM()
    {
        var files = TestModels.Converted(ServedModel.ModelName);
        using var process = CliProcess.Start("paligemma", "serve", "--model", files.TextModelPath, "--mmproj", files.MmprojPath, "--port", "0", "--api-key", "k1");
        var stderr = new StringBuilder();
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }

            if (ListeningLine().Match(e.Data) is { Success: true } match)
            {
                listening.TrySetResult(new Uri(match.Groups[1].Value));
            }
        };
        process.BeginErrorReadLine();
        try
        {
            var address = await listening.Task.WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal("127.0.0.1", address.Host);
            using var client = new HttpClient { BaseAddress = address };
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("health")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("v1/models")).StatusCode);
            client.DefaultRequestHeaders.Authorization = new("Bearer", "k1");
            string body = ChatCompletionsTests.ChatBody(ChatCompletionsTests.PictureParts(1, "caption en"), ", \"max_tokens\": 4");
            using var answer = await client.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);

            Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "serve did not stop on SIGTERM");
            process.WaitForExit();
            output.WriteLine(stderr.ToString());
            Assert.Equal(0, process.ExitCode);
            Assert.Contains("stopped", stderr.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    [GeneratedRegex(@"listening on (\S+)")]
    private static partial Regex ListeningLine();
}
