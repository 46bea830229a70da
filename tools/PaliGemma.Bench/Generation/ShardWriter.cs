using System.Collections.Concurrent;
using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Bench.Generation;

/// <summary>
/// Streams one shard's random tensors to disk. Chunks are generated on the thread pool a few
/// ahead of the writer and written strictly in order, so generation overlaps the disk writes while
/// memory stays at a few chunk buffers whatever the tensor size.
/// </summary>
internal sealed class ShardWriter
{
    private readonly ulong _seed;
    private readonly WeightFormat _format;
    private readonly GenerationProgress _progress;
    private readonly int _lookahead = Math.Max(2, Environment.ProcessorCount * 2);
    private readonly ConcurrentBag<byte[]> _buffers = [];

    public ShardWriter(ulong seed, WeightFormat format, GenerationProgress progress)
    {
        _seed = seed;
        _format = format;
        _progress = progress;
    }

    public void Write(Shard shard, string path, CancellationToken cancellationToken)
    {
        _progress.StartFile(shard.FileName, shard.DataBytes);
        AtomicFile.Write(path, stream => WriteTo(stream, shard, cancellationToken), cancellationToken);
        _progress.EndFile();
    }

    private void WriteTo(Stream stream, Shard shard, CancellationToken cancellationToken)
    {
        using var writer = new SafetensorsWriter(stream);
        foreach (var tensor in shard.Tensors)
        {
            writer.AddTensor(tensor.Name, _format.DType, tensor.Shape);
        }

        writer.WriteHeader();

        var pending = new Queue<Task<Chunk>>();
        using var chunks = Chunks(shard.Tensors).GetEnumerator();
        void Schedule()
        {
            while (pending.Count < _lookahead && chunks.MoveNext())
            {
                var chunk = chunks.Current;
                pending.Enqueue(Task.Run(() => Generate(chunk), cancellationToken));
            }
        }

        try
        {
            Schedule();
            while (pending.Count > 0)
            {
                var chunk = pending.Dequeue().GetAwaiter().GetResult();
                Schedule();
                writer.WriteData(chunk.Buffer.AsSpan(0, chunk.ByteCount));
                _buffers.Add(chunk.Buffer);
                _progress.Advance(chunk.ByteCount);
            }
        }
        finally
        {
            // On failure, let the chunks in flight finish before the buffers and the file go away.
            try
            {
                Task.WaitAll(pending.ToArray());
            }
            catch (AggregateException)
            {
            }
        }
    }

    private Chunk Generate(Chunk chunk)
    {
        int bytes = chunk.ElementCount * _format.ElementSize;
        if (!_buffers.TryTake(out byte[]? buffer))
        {
            buffer = new byte[RandomValues.ChunkElements * _format.ElementSize];
        }

        RandomValues.Fill(_seed, chunk.Tensor.Name, chunk.Index, chunk.Tensor.Values, _format, buffer.AsSpan(0, bytes));
        return chunk with { Buffer = buffer, ByteCount = bytes };
    }

    private static IEnumerable<Chunk> Chunks(IEnumerable<TensorSpec> tensors)
    {
        foreach (var tensor in tensors)
        {
            long elements = tensor.ElementCount;
            for (long index = 0; index * RandomValues.ChunkElements < elements; index++)
            {
                int count = (int)Math.Min(RandomValues.ChunkElements, elements - (index * RandomValues.ChunkElements));
                yield return new Chunk(tensor, index, count, [], 0);
            }
        }
    }

    /// <summary>A run of up to <see cref="RandomValues.ChunkElements"/> elements of one tensor; the buffer once generated.</summary>
    private sealed record Chunk(TensorSpec Tensor, long Index, int ElementCount, byte[] Buffer, int ByteCount);
}
