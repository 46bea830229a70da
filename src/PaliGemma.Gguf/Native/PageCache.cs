using System.Runtime.InteropServices;

namespace PaliGemma.Gguf.Native;

/// <summary>
/// Tells the kernel a memory-mapped range has been read and may leave this process: its pages stay
/// in the page cache, but stop counting toward the converter's resident memory, which would otherwise
/// grow to the size of the checkpoint (11.7 GB for a 3B F32 one).
/// </summary>
internal static unsafe class PageCache
{
    private const int MadviseDontNeed = 4;
    private static readonly long PageSize = Environment.SystemPageSize;

    public static void Release(byte* start, long length)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        // Only whole pages inside the range: a neighbouring tensor's bytes may share the edge pages.
        long first = ((long)start + PageSize - 1) / PageSize * PageSize;
        long end = ((long)start + length) / PageSize * PageSize;
        if (end > first)
        {
            _ = madvise((void*)first, (nuint)(end - first), MadviseDontNeed);
        }
    }

    [DllImport("libc", SetLastError = false)]
    private static extern int madvise(void* address, nuint length, int advice);
}
