using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;

namespace PaliGemma.Bench.Measurement;

/// <summary>
/// The machine's memory read bandwidth with the benchmark's thread count: each thread sums its own
/// slice of a buffer far larger than the caches, best of several passes.
/// </summary>
internal static class MemoryBandwidth
{
    public static double BytesPerSecond(int threads, long bytes = 1L << 30, int passes = 5)
    {
        int count = (int)(bytes / sizeof(float));
        float[] buffer = GC.AllocateUninitializedArray<float>(count);
        Parallel.For(0, threads, t =>
        {
            var slice = buffer.AsSpan(Slice(count, threads, t));
            slice.Fill(1f);
        });

        double best = 0;
        float sink = 0;
        for (int pass = 0; pass < passes; pass++)
        {
            var clock = Stopwatch.StartNew();
            var sums = new float[threads];
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => sums[t] = Sum(buffer.AsSpan(Slice(count, threads, t))));
            best = Math.Max(best, bytes / clock.Elapsed.TotalSeconds);
            sink += sums.Sum();
        }

        GC.KeepAlive(sink);
        return best;
    }

    private static Range Slice(int count, int parts, int index) => new(count / parts * index, index == parts - 1 ? count : count / parts * (index + 1));

    private static float Sum(ReadOnlySpan<float> values)
    {
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(values);
        Vector<float> a = default, b = default, c = default, d = default;
        int i = 0;
        for (; i + 4 <= vectors.Length; i += 4)
        {
            a += vectors[i];
            b += vectors[i + 1];
            c += vectors[i + 2];
            d += vectors[i + 3];
        }

        return Vector.Sum(a + b + c + d);
    }
}
