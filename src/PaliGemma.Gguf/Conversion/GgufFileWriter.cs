using System.Buffers;
using System.Diagnostics;
using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Gguf.Conversion;

/// <summary>
/// Streams tensor plans into a GGUF file chunk by chunk, into a temporary file next to the target
/// that is renamed only when complete: an interrupted or failed run leaves no finished-looking file.
/// </summary>
internal static class GgufFileWriter
{
    /// <summary>Floats per chunk: bounds the memory of a conversion whatever the tensor size.</summary>
    private const int ChunkElements = 1 << 22;

    public static void Write(
        string path,
        IEnumerable<KeyValuePair<string, GgufValue>> metadata,
        IReadOnlyList<TensorPlan> plans,
        bool overwrite,
        IProgress<ConversionProgress>? progress,
        CancellationToken cancellationToken)
    {
        if (File.Exists(path) && !overwrite)
        {
            throw PaliGemmaException.InFile(path, "already exists (use --force to overwrite)");
        }

        string temporary = TemporaryFiles.CreatePath(path);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            using (var writer = new GgufWriter(stream))
            {
                foreach (var (key, value) in metadata)
                {
                    writer.AddMetadata(key, value);
                }

                foreach (var plan in plans)
                {
                    writer.AddTensor(plan.Name, plan.Type, plan.Source.Dimensions);
                }

                writer.WriteHeader();
                WriteTensors(path, writer, plans, progress, cancellationToken);
                writer.Finish();
                stream.Flush(flushToDisk: true);
            }

            cancellationToken.ThrowIfCancellationRequested();
            File.Move(temporary, path, overwrite);
        }
        catch (IOException e) when (e is not FileNotFoundException)
        {
            throw PaliGemmaException.InFile(path, $"cannot write: {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw PaliGemmaException.InFile(path, $"cannot write: {e.Message}", e);
        }
        finally
        {
            TemporaryFiles.Delete(temporary);
        }
    }

    /// <summary>
    /// Streams every tensor chunk by chunk. The next chunk is read (and converted to F32) on another
    /// thread while the current one is encoded and written: reading the checkpoint and quantizing
    /// both take time, and overlapping them keeps both cores busy.
    /// </summary>
    private static void WriteTensors(string path, GgufWriter writer, IReadOnlyList<TensorPlan> plans, IProgress<ConversionProgress>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        long total = writer.DataBytes;
        long written = 0;
        float[][] buffers = [ArrayPool<float>.Shared.Rent(ChunkElements), ArrayPool<float>.Shared.Rent(ChunkElements)];
        byte[] encoded = ArrayPool<byte>.Shared.Rent(ChunkElements * 4);
        Task? pending = null;
        try
        {
            using var chunks = Chunks(plans).GetEnumerator();
            Task Prefetch(Chunk chunk, float[] buffer) =>
                Task.Run(() => chunk.Plan.Source.ReadRows(chunk.FirstRow, buffer.AsSpan(0, chunk.Elements)), cancellationToken);

            int slot = 0;
            bool more = chunks.MoveNext();
            pending = more ? Prefetch(chunks.Current, buffers[slot]) : null;
            while (more)
            {
                var chunk = chunks.Current;
                pending!.GetAwaiter().GetResult();
                cancellationToken.ThrowIfCancellationRequested();
                more = chunks.MoveNext();
                pending = more ? Prefetch(chunks.Current, buffers[1 - slot]) : null;

                int bytes = TensorEncoder.Encode(chunk.Plan.Type, buffers[slot].AsSpan(0, chunk.Elements), chunk.Plan.Source.RowLength, encoded);
                writer.WriteTensorData(encoded.AsSpan(0, bytes));
                written += bytes;
                progress?.Report(new ConversionProgress(path, chunk.Plan.Name, chunk.Index, plans.Count, written, total, clock.Elapsed));
                slot = 1 - slot;
            }
        }
        finally
        {
            // The prefetch writes into a pooled buffer: let it finish before the buffer goes back.
            try
            {
                pending?.Wait(CancellationToken.None);
            }
            catch (AggregateException)
            {
            }

            ArrayPool<float>.Shared.Return(buffers[0]);
            ArrayPool<float>.Shared.Return(buffers[1]);
            ArrayPool<byte>.Shared.Return(encoded);
        }
    }

    private static IEnumerable<Chunk> Chunks(IReadOnlyList<TensorPlan> plans)
    {
        for (int index = 0; index < plans.Count; index++)
        {
            var plan = plans[index];
            long rowLength = plan.Source.RowLength;
            if (rowLength > ChunkElements)
            {
                throw new PaliGemmaException($"tensor '{plan.Name}': rows of {rowLength} elements exceed the converter's chunk of {ChunkElements}");
            }

            long rowsPerChunk = Math.Max(1, ChunkElements / rowLength);
            for (long row = 0; row < plan.Source.RowCount; row += rowsPerChunk)
            {
                long rows = Math.Min(rowsPerChunk, plan.Source.RowCount - row);
                yield return new Chunk(plan, index, row, (int)(rows * rowLength));
            }
        }
    }

    private readonly record struct Chunk(TensorPlan Plan, int Index, long FirstRow, int Elements);
}
