namespace PaliGemma.Gguf.Conversion;

/// <summary>Progress of writing one GGUF file, reported after each chunk of tensor data.</summary>
/// <param name="FilePath">The file being written (its final name).</param>
/// <param name="TensorName">The tensor being written.</param>
/// <param name="TensorIndex">Zero-based index of that tensor.</param>
/// <param name="TensorCount">Tensors in the file.</param>
/// <param name="BytesWritten">Bytes of tensor data written so far.</param>
/// <param name="TotalBytes">Bytes of tensor data in the file.</param>
/// <param name="Elapsed">Time since the file was started.</param>
public sealed record ConversionProgress(string FilePath, string TensorName, int TensorIndex, int TensorCount, long BytesWritten, long TotalBytes, TimeSpan Elapsed)
{
    /// <summary>Bytes per second written so far.</summary>
    public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? BytesWritten / Elapsed.TotalSeconds : 0;
}
