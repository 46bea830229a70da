using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Native;

namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Rows of the text model's <c>token_embd</c>, read from the GGUF file and dequantized with ggml's
/// own <c>to_float</c> for the stored type: the text half of the prefix goes to llama.cpp as
/// embeddings, in the same batch as the image rows.
/// </summary>
internal sealed class TokenEmbeddingTable : IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly long _dataStart;
    private readonly GgmlType _type;
    private readonly long _rowBytes;

    public TokenEmbeddingTable(GgufFile gguf)
    {
        var tensor = gguf.FindTensor("token_embd.weight") ?? throw PaliGemmaException.InFile(gguf.Path, "no token_embd.weight tensor");
        Dimension = (int)tensor.Dimensions[0];
        Rows = (int)tensor.Dimensions[1];
        _type = tensor.Type;
        _rowBytes = tensor.Type.RowBytes(Dimension);
        _dataStart = gguf.DataOffset + tensor.Offset;
        _file = File.OpenHandle(gguf.Path);
    }

    public int Dimension { get; }

    public int Rows { get; }

    public void ReadRow(int token, Span<float> destination)
    {
        if ((uint)token >= (uint)Rows)
        {
            throw new PaliGemmaException($"token id {token} is outside the vocabulary of {Rows}");
        }

        var bytes = new byte[_rowBytes];
        if (RandomAccess.Read(_file, bytes, _dataStart + (token * _rowBytes)) != bytes.Length)
        {
            throw new PaliGemmaException("token_embd.weight is truncated");
        }

        if (_type == GgmlType.F32)
        {
            MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
        }
        else
        {
            GgmlNative.ToFloat(_type, bytes, destination[..Dimension]);
        }
    }

    public void Dispose() => _file.Dispose();
}
