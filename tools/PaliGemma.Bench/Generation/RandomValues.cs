using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace PaliGemma.Bench.Generation;

/// <summary>
/// Deterministic pseudo-random tensor values. Every chunk of every tensor draws from its own
/// xoshiro256** stream keyed by (seed, tensor name, chunk index), so the values depend neither on
/// which thread generates them nor on the shard layout, and a BF16 checkpoint holds exactly the
/// F32 checkpoint's values rounded to nearest even.
/// </summary>
internal static class RandomValues
{
    /// <summary>Elements per chunk. Part of the determinism contract: changing it changes the values.</summary>
    public const int ChunkElements = 1 << 20;

    /// <summary>Fills <paramref name="destination"/> with chunk <paramref name="chunkIndex"/> of a tensor, encoded as <paramref name="format"/>.</summary>
    public static void Fill(ulong seed, string tensorName, long chunkIndex, ValueDistribution distribution, WeightFormat format, Span<byte> destination)
    {
        var random = new Xoshiro256StarStar(ChunkKey(seed, tensorName, chunkIndex));

        // Uniform on [mean - a, mean + a) has standard deviation a / sqrt(3).
        float halfWidth = distribution.StdDev * MathF.Sqrt(3f);
        float scale = halfWidth / (1 << 23);
        float mean = distribution.Mean;
        if (format == WeightFormat.F32)
        {
            FillSingles(ref random, mean, scale, MemoryMarshal.Cast<byte, float>(destination));
        }
        else if (format == WeightFormat.BF16)
        {
            FillBFloat16(ref random, mean, scale, MemoryMarshal.Cast<byte, ushort>(destination));
        }
        else
        {
            throw new ArgumentException($"cannot generate {format.Name}", nameof(format));
        }
    }

    private static void FillSingles(ref Xoshiro256StarStar random, float mean, float scale, Span<float> values)
    {
        int i = 0;
        for (; i + 1 < values.Length; i += 2)
        {
            ulong bits = random.Next();
            values[i] = Sample(bits >> 40, mean, scale);
            values[i + 1] = Sample((bits >> 8) & 0xFFFFFF, mean, scale);
        }

        if (i < values.Length)
        {
            values[i] = Sample(random.Next() >> 40, mean, scale);
        }
    }

    private static void FillBFloat16(ref Xoshiro256StarStar random, float mean, float scale, Span<ushort> values)
    {
        int i = 0;
        for (; i + 1 < values.Length; i += 2)
        {
            ulong bits = random.Next();
            values[i] = ToBFloat16(Sample(bits >> 40, mean, scale));
            values[i + 1] = ToBFloat16(Sample((bits >> 8) & 0xFFFFFF, mean, scale));
        }

        if (i < values.Length)
        {
            values[i] = ToBFloat16(Sample(random.Next() >> 40, mean, scale));
        }
    }

    /// <summary>24 random bits to a uniform value on [mean - a, mean + a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Sample(ulong bits24, float mean, float scale) => mean + (((int)bits24 - (1 << 23)) * scale);

    /// <summary>Round to nearest even, as PyTorch does (the values are finite, so no NaN case).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort ToBFloat16(float value)
    {
        uint x = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
    }

    private static ulong ChunkKey(ulong seed, string tensorName, long chunkIndex) =>
        SplitMix64.Mix(seed ^ SplitMix64.Mix(Fnv1a(tensorName) ^ SplitMix64.Mix((ulong)chunkIndex)));

    /// <summary>A stable string hash (string.GetHashCode is randomized per process).</summary>
    private static ulong Fnv1a(string text)
    {
        ulong hash = 14695981039346656037;
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            hash = (hash ^ b) * 1099511628211;
        }

        return hash;
    }
}

/// <summary>SplitMix64's finalizer: spreads nearby keys over the whole 64-bit range.</summary>
internal static class SplitMix64
{
    public const ulong Increment = 0x9E3779B97F4A7C15;

    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }
}

/// <summary>xoshiro256** (Blackman and Vigna): fast, with every output bit of good quality.</summary>
internal struct Xoshiro256StarStar
{
    private ulong _s0;
    private ulong _s1;
    private ulong _s2;
    private ulong _s3;

    /// <summary>Seeds the state from SplitMix64, as the authors recommend, so it is never all zero in practice.</summary>
    public Xoshiro256StarStar(ulong key)
    {
        _s0 = SplitMix64.Mix(key += SplitMix64.Increment);
        _s1 = SplitMix64.Mix(key += SplitMix64.Increment);
        _s2 = SplitMix64.Mix(key += SplitMix64.Increment);
        _s3 = SplitMix64.Mix(key + SplitMix64.Increment);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Next()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }
}
