using Microsoft.Playwright;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Server;

/// <summary>
/// The page in a real headless Chromium (Debian's, driven by Playwright): pick a picture, run a task,
/// watch the answer stream in and the boxes drawn. PALIGEMMA_CHROMIUM names another browser binary.
/// </summary>
public sealed class WebPageTests(ServedModel served, ITestOutputHelper output) : IClassFixture<ServedModel>
{

    [Fact]
    public async Task A_picture_and_a_task_give_the_streamed_answer_and_the_boxes_drawn()
    {
        var expected = served.Direct(GoldenData.ImagePath("chelsea"), "caption en", 20);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await Chromium.NewPageAsync(browser);
        // Script errors only: the browser also logs the first 401 (the page asking for the key) as an error.
        var scriptErrors = new List<string>();
        page.PageError += (_, error) => scriptErrors.Add(error);

        await page.GotoAsync(served.BaseAddress.ToString());

        // The server wants a key: the page says so and asks for it.
        await page.Locator("#key").WaitForAsync();
        await page.FillAsync("#key", ServedModel.ApiKey);
        await page.Locator("#key").DispatchEventAsync("change");
        await Assertions.Expect(page.Locator("#model")).ToHaveTextAsync(Path.GetFileNameWithoutExtension(served.Files.TextModelPath));

        await page.SetInputFilesAsync("#file", GoldenData.ImagePath("chelsea"));
        await page.Locator("#picture-info").Filter(new() { HasText = "×" }).WaitForAsync();
        await page.FillAsync("#max-tokens", "20");
        await Assertions.Expect(page.Locator("#prompt")).ToHaveValueAsync("caption en");

        await page.ClickAsync("#run");
        await Assertions.Expect(page.Locator("#status")).ToHaveAttributeAsync("data-state", "done", new() { Timeout = 60_000 });

        string answer = await page.Locator("#answer").TextContentAsync() ?? "";
        // The page counts the token events it appended before the final result, and keeps what they added up to.
        string tokenEvents = await page.Locator("#answer").GetAttributeAsync("data-tokens") ?? "0";
        string streamed = await page.Locator("#answer").GetAttributeAsync("data-streamed") ?? "";
        output.WriteLine($"answer {System.Text.Json.JsonSerializer.Serialize(answer)} from {tokenEvents} token events");
        Assert.Equal(expected.Text, answer);
        Assert.Equal(expected.Text, streamed);
        Assert.Equal(expected.Tokens.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), tokenEvents);
        await page.ScreenshotAsync(new() { Path = Chromium.ScreenshotPath("caption.png", output) });
        Assert.Empty(scriptErrors);
    }
}

/// <summary>The browser the page tests drive: Debian's Chromium, headless, through Playwright.</summary>
internal static class Chromium
{
    /// <summary>PALIGEMMA_CHROMIUM names another browser binary.</summary>
    public static string ExecutablePath => Environment.GetEnvironmentVariable("PALIGEMMA_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    public static Task<IBrowser> LaunchAsync(IPlaywright playwright) =>
        playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = ExecutablePath, Headless = true, Args = ["--no-sandbox"] });

    public static Task<IPage> NewPageAsync(IBrowser browser) =>
        browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1200, Height = 760 } });

    /// <summary>Screenshots go to PALIGEMMA_SCREENSHOTS (default: a temporary folder), to be looked at.</summary>
    public static string ScreenshotPath(string name, ITestOutputHelper output)
    {
        string folder = Environment.GetEnvironmentVariable("PALIGEMMA_SCREENSHOTS") is { Length: > 0 } chosen ? chosen : Path.Combine(Path.GetTempPath(), "paligemma-screenshots");
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, name);
        output.WriteLine($"screenshot: {path}");
        return path;
    }
}
