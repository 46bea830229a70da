using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tests.Infrastructure;
using PaliGemma.Gguf.Tests.Server;
using Xunit;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// Every native call that computes, from loading (the embedding-scale probe decodes) to generating, runs on the
/// model's one request thread. llama.cpp's CPU backend synchronises its threads with OpenMP, and libgomp gives every
/// thread that starts parallel work a worker team of its own: a second team put more threads than cores to work, and
/// libgomp then sleeps at every barrier instead of spinning, which measured 0.54-0.83x the bare engine's decode speed
/// before loading moved onto the queue. Linux names a new thread after the thread that created it, so a team started
/// from the caller's thread would carry the caller's name.
/// </summary>
public sealed class ComputeThreadTests
{
    private const string CallerName = "caller-7d1e"; // unique in the process; Linux keeps 15 characters of a name

    [Fact]
    public void Loading_and_generating_start_no_native_threads_from_the_calling_thread()
    {
        var files = TestModels.Converted(ServedModel.ModelName);
        string picture = GoldenData.ImagePath("astronaut");
        int namedAfterCaller = 0;
        Exception? failure = null;
        var caller = new Thread(() =>
        {
            try
            {
                using var model = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Threads = 2 });
                _ = model.Generate(ImagePreprocessor.Load(picture, model.ImageSize), "caption en", new GenerationOptions { MaxNewTokens = 3 });
                namedAfterCaller = ThreadsNamed(CallerName);
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { Name = CallerName };

        caller.Start();
        caller.Join();

        Assert.Null(failure);
        Assert.Equal(1, namedAfterCaller); // the caller itself, and no worker of its own
    }

    private static int ThreadsNamed(string name) =>
        Directory.GetDirectories("/proc/self/task").Count(task => ReadName(task) == name);

    private static string? ReadName(string task)
    {
        try
        {
            return File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n');
        }
        catch (IOException)
        {
            return null; // the thread ended while the list was read
        }
    }
}
