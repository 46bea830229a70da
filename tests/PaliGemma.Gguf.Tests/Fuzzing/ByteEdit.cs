using CsCheck;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// A blind edit of a file's bytes. Positions are fractions (of 2^32) of a region the caller picks,
/// the header for instance, unless <see cref="Anywhere"/> says the whole file: the same edit then
/// means something in files of any length, which is what lets CsCheck shrink it.
/// </summary>
internal abstract record ByteEdit(bool Anywhere)
{
    /// <summary>A uniform fraction of 2^32 (Gen.UInt32 favours small numbers, which would pile the edits at the start).</summary>
    private static readonly Gen<uint> Position = Gen.UInt[0, uint.MaxValue];

    public static Gen<ByteEdit> Any { get; } = Create();

    public byte[] Apply(byte[] input, int regionStart, int regionEnd)
    {
        (int start, int end) = Anywhere ? (0, input.Length) : (Math.Min(regionStart, input.Length), Math.Min(regionEnd, input.Length));
        return Apply(input, start, Math.Max(start, end), input.Length);
    }

    protected abstract byte[] Apply(byte[] input, int start, int end, int length);

    /// <summary>A position in [start, end) (or <paramref name="start"/> for an empty region).</summary>
    protected static int At(uint where, int start, int end) => start + (int)((ulong)where * (ulong)(end - start) >> 32);

    protected static string Hex(byte[] bytes) => Convert.ToHexString(bytes);

    private static Gen<ByteEdit> Create()
    {
        var anywhere = Gen.Int[0, 3].Select(i => i == 0);
        var garbage = Gen.OneOf(
            Gen.Byte.Array[1, 16],
            Gen.OneOfConst<byte[]>([0], [0xFF], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], "{\"".Select(c => (byte)c).ToArray(), [0xC0, 0x80], [0xED, 0xA0, 0x80]));
        var interesting = Gen.OneOf(Gen.Byte, Gen.OneOfConst<byte>(0, 1, 0x7F, 0x80, 0xFF, (byte)'"', (byte)'{', (byte)'}', (byte)'[', (byte)']', (byte)',', (byte)':', (byte)'-', (byte)'9', (byte)'\\'));
        return Gen.Frequency<ByteEdit>(
            (4, Gen.Select(Position, Gen.Int[0, 7], anywhere, (w, b, a) => (ByteEdit)new FlipBit(w, b, a))),
            (4, Gen.Select(Position, interesting, anywhere, (w, v, a) => (ByteEdit)new SetByte(w, v, a))),
            (2, Gen.Select(Position, anywhere, (w, a) => (ByteEdit)new Truncate(w, a))),
            (1, garbage.Select(g => (ByteEdit)new Append(g))),
            (1, Gen.Select(Position, garbage, anywhere, (w, g, a) => (ByteEdit)new Insert(w, g, a))),
            (1, Gen.Select(Position, Gen.Int[1, 64], anywhere, (w, n, a) => (ByteEdit)new Delete(w, n, a))));
    }
}

internal sealed record FlipBit(uint Where, int Bit, bool Anywhere) : ByteEdit(Anywhere)
{
    protected override byte[] Apply(byte[] input, int start, int end, int length)
    {
        if (end <= start)
        {
            return input;
        }

        var output = (byte[])input.Clone();
        output[At(Where, start, end)] ^= (byte)(1 << Bit);
        return output;
    }
}

internal sealed record SetByte(uint Where, byte Value, bool Anywhere) : ByteEdit(Anywhere)
{
    protected override byte[] Apply(byte[] input, int start, int end, int length)
    {
        if (end <= start)
        {
            return input;
        }

        var output = (byte[])input.Clone();
        output[At(Where, start, end)] = Value;
        return output;
    }
}

internal sealed record Truncate(uint Where, bool Anywhere) : ByteEdit(Anywhere)
{
    protected override byte[] Apply(byte[] input, int start, int end, int length) => input[..At(Where, start, end)];
}

internal sealed record Append(byte[] Garbage) : ByteEdit(true)
{
    protected override byte[] Apply(byte[] input, int start, int end, int length) => [.. input, .. Garbage];

    public override string ToString() => $"Append {{ Garbage = {Hex(Garbage)} }}";
}

internal sealed record Insert(uint Where, byte[] Bytes, bool Anywhere) : ByteEdit(Anywhere)
{
    protected override byte[] Apply(byte[] input, int start, int end, int length)
    {
        int at = At(Where, start, end);
        return [.. input.AsSpan(0, at), .. Bytes, .. input.AsSpan(at)];
    }

    public override string ToString() => $"Insert {{ Where = {Where}, Bytes = {Hex(Bytes)}, Anywhere = {Anywhere} }}";
}

internal sealed record Delete(uint Where, int Count, bool Anywhere) : ByteEdit(Anywhere)
{
    protected override byte[] Apply(byte[] input, int start, int end, int length)
    {
        int at = At(Where, start, end);
        int stop = Math.Min(length, at + Count);
        return [.. input.AsSpan(0, at), .. input.AsSpan(stop)];
    }
}
