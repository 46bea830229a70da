using System.Runtime.InteropServices;
using PaliGemma.Gguf.Native;
using Xunit;

namespace PaliGemma.Gguf.Tests.Native;

/// <summary>
/// The C allocator's free pages go back to the kernel and live blocks stay as they were. Residency is read per page
/// with mincore(2), so other tests' allocations in the same process do not enter the figure.
/// </summary>
public sealed unsafe class NativeHeapTests
{
    private const int Blocks = 2000;

    /// <summary>Below glibc's smallest mmap threshold (128 KiB): the blocks come from an arena, not a mapping of their own.</summary>
    private const int BlockBytes = 60 * 1024;

    private static readonly long PageSize = Environment.SystemPageSize;

    [Fact]
    public void Releasing_unmaps_the_pages_of_freed_blocks_and_keeps_the_live_ones()
    {
        var blocks = new byte*[Blocks];
        for (int i = 0; i < Blocks; i++)
        {
            blocks[i] = (byte*)NativeMemory.Alloc(BlockBytes);
            new Span<byte>(blocks[i], BlockBytes).Fill((byte)(i % 251));
        }

        // Every fourth block (the last one among them) stays: the freed ones between merge into holes of 180 KiB that
        // the allocator keeps for reuse, none of them at the top of the heap, where free() would trim by itself.
        bool IsLive(int i) => i % 4 == 3;
        var freedPages = new List<nint>();
        var livePages = new List<nint>();
        for (int i = 0; i < Blocks; i++)
        {
            (IsLive(i) ? livePages : freedPages).AddRange(WholePages(blocks[i], BlockBytes));
        }

        for (int i = 0; i < Blocks; i++)
        {
            if (!IsLive(i))
            {
                NativeMemory.Free(blocks[i]);
            }
        }

        double freedResidentBefore = ResidentShare(freedPages);
        Assert.True(NativeHeap.ReleaseFreedMemory(), "malloc_trim is missing from this C library");
        double freedResidentAfter = ResidentShare(freedPages);
        double liveResidentAfter = ResidentShare(livePages);

        for (int i = 3; i < Blocks; i += 4)
        {
            var block = new ReadOnlySpan<byte>(blocks[i], BlockBytes);
            Assert.True(block.IndexOfAnyExcept((byte)(i % 251)) < 0, $"live block {i} changed");
            NativeMemory.Free(blocks[i]);
        }

        Assert.True(freedResidentBefore > 0.9, $"only {freedResidentBefore:P0} of the freed blocks' pages were resident before the release");
        // The allocator's bookkeeping stays at the start of each hole, and other threads may reuse a hole at once.
        Assert.True(freedResidentAfter < 0.1, $"{freedResidentAfter:P0} of the freed blocks' pages are still resident");
        Assert.Equal(1.0, liveResidentAfter);
    }

    private static List<nint> WholePages(byte* start, long length)
    {
        var pages = new List<nint>();
        long first = ((long)start + PageSize - 1) / PageSize * PageSize;
        for (long page = first; page + PageSize <= (long)start + length; page += PageSize)
        {
            pages.Add((nint)page);
        }

        return pages;
    }

    private static double ResidentShare(List<nint> pages)
    {
        int resident = 0;
        byte vector;
        foreach (nint page in pages)
        {
            Assert.Equal(0, mincore((void*)page, (nuint)PageSize, &vector));
            resident += vector & 1;
        }

        return resident / (double)pages.Count;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int mincore(void* address, nuint length, byte* vector);
}
