namespace PaliGemma.Gguf.Tests.Tasks;

/// <summary>Pictures kept in the repository's test_images folder.</summary>
internal static class TaskTestFiles
{
    public static string TestImage(string name) => Path.Combine(RepositoryRoot(), "test_images", name);

    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "PaliGemma.Gguf.sln")))
            {
                return folder.FullName;
            }
        }

        throw new DirectoryNotFoundException("no folder holding PaliGemma.Gguf.sln above " + AppContext.BaseDirectory);
    }
}
