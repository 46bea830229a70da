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

    private static void WriteTensors(string path, GgufWriter writer, IReadOnlyList<TensorPlan> plans, IProgress<ConversionProgress>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        long total = writer.DataBytes;
        long written = 0;
        float[] rows = ArrayPool<float>.Shared.Rent(ChunkElements);
        byte[] encoded = ArrayPool<byte>.Shared.Rent(ChunkElements * 4);
        try
        {
            for (int index = 0; index < plans.Count; index++)
            {
                var (name, source, type) = plans[index];
                long rowLength = source.RowLength;
                long rowsPerChunk = Math.Max(1, ChunkElements / rowLength);
                if (rowLength > ChunkElements)
                {
                    throw new PaliGemmaException($"tensor '{name}': rows of {rowLength} elements exceed the converter's chunk of {ChunkElements}");
                }

                for (long row = 0; row < source.RowCount; row += rowsPerChunk)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int count = (int)Math.Min(rowsPerChunk, source.RowCount - row);
                    var chunk = rows.AsSpan(0, (int)(count * rowLength));
                    source.ReadRows(row, chunk);
                    int bytes = TensorEncoder.Encode(type, chunk, rowLength, encoded);
                    writer.WriteTensorData(encoded.AsSpan(0, bytes));
                    written += bytes;
                    progress?.Report(new ConversionProgress(path, name, index, plans.Count, written, total, clock.Elapsed));
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
            ArrayPool<byte>.Shared.Return(encoded);
        }
    }
}
