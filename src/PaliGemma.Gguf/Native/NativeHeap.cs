using System.Runtime.InteropServices;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Gguf.Native;

/// <summary>
/// The C allocator's memory, which llama.cpp, mtmd and the runtime's own native parts share. Every request
/// creates and frees a llama.cpp context (KV cache, compute buffers) and an image's buffers; glibc keeps what
/// is freed inside its arenas for reuse, so resident memory after a burst depends on how the frees happened to
/// fall (in the bounded load test, 1 to 25 MB more after 200 requests than before them, nearly all of it free
/// space in one arena). Returning it to the kernel costs a few milliseconds and makes resident memory say what
/// the process holds.
/// </summary>
public static class NativeHeap
{
    private static volatile bool s_unavailable = !OperatingSystem.IsLinux();

    /// <summary>
    /// Gives back what is kept for reuse: first the buffers the picture decoder pools between pictures, then the
    /// free pages of every malloc arena, to the kernel (glibc's <c>malloc_trim(0)</c>), theirs included. Nothing in
    /// use moves; the next allocations fault their pages in again. Returns false where the C library has no such
    /// call (not Linux, or musl); the decoder's buffers are freed even then.
    /// </summary>
    public static bool ReleaseFreedMemory()
    {
        PictureDecoder.ReleaseRetainedMemory();
        if (s_unavailable)
        {
            return false;
        }

        try
        {
            _ = malloc_trim(0);
            return true;
        }
        catch (EntryPointNotFoundException)
        {
            s_unavailable = true;
            return false;
        }
    }

    [DllImport("libc", SetLastError = false)]
    private static extern int malloc_trim(nuint pad);
}
