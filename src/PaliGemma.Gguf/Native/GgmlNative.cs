using System.Runtime.InteropServices;
using PaliGemma.Gguf.Gguf;

namespace PaliGemma.Gguf.Native;

/// <summary>ggml's type conversions (libggml-base), which LLamaSharp does not wrap.</summary>
internal static unsafe class GgmlNative
{
    /// <summary>Dequantizes <paramref name="destination"/>.Length elements of <paramref name="type"/>.</summary>
    public static void ToFloat(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        NativeLibraries.EnsureLoaded();
        var traits = ggml_get_type_traits((int)type);
        if (traits == null || traits->to_float == null)
        {
            throw new PaliGemmaException($"ggml cannot convert {type} to F32");
        }

        if (source.Length < type.RowBytes(destination.Length))
        {
            throw new ArgumentException("source too short");
        }

        fixed (byte* x = source)
        fixed (float* y = destination)
        {
            traits->to_float(x, y, destination.Length);
        }
    }

    /// <summary>Quantizes whole rows with ggml's reference quantizer; returns the bytes written.</summary>
    public static long Quantize(GgmlType type, ReadOnlySpan<float> rows, long rowLength, Span<byte> destination)
    {
        NativeLibraries.EnsureLoaded();
        long rowCount = rows.Length / rowLength;
        long bytes = type.RowBytes(rowLength) * rowCount;
        if (rows.Length % rowLength != 0 || destination.Length < bytes)
        {
            throw new ArgumentException($"{type}: {rows.Length} values are not whole rows of {rowLength}, or the destination is too small");
        }

        if (ggml_quantize_requires_imatrix((int)type))
        {
            throw new PaliGemmaException($"{type} needs an importance matrix, which this converter does not compute");
        }

        fixed (float* source = rows)
        fixed (byte* target = destination)
        {
            return (long)ggml_quantize_chunk((int)type, source, target, 0, rowCount, rowLength, null);
        }
    }

    public static bool RequiresImportanceMatrix(GgmlType type)
    {
        NativeLibraries.EnsureLoaded();
        return ggml_quantize_requires_imatrix((int)type);
    }

    /// <summary>ggml's own block size and bytes per block, to cross-check <see cref="GgmlTypes"/>.</summary>
    public static (long BlockSize, long TypeSize) Layout(GgmlType type)
    {
        NativeLibraries.EnsureLoaded();
        return (ggml_blck_size((int)type), (long)ggml_type_size((int)type));
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TypeTraits
    {
        public IntPtr type_name;
        public long blck_size;
        public long blck_size_interleave;
        public nuint type_size;
        [MarshalAs(UnmanagedType.U1)]
        public bool is_quantized;
        public delegate* unmanaged[Cdecl]<void*, float*, long, void> to_float;
        public IntPtr from_float_ref;
    }

    [DllImport(NativeLibraries.GgmlBase, CallingConvention = CallingConvention.Cdecl)]
    private static extern TypeTraits* ggml_get_type_traits(int type);

    [DllImport(NativeLibraries.GgmlBase, CallingConvention = CallingConvention.Cdecl)]
    private static extern nuint ggml_quantize_chunk(int type, float* src, void* dst, long start, long nrows, long n_per_row, float* imatrix);

    [DllImport(NativeLibraries.GgmlBase, CallingConvention = CallingConvention.Cdecl)]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool ggml_quantize_requires_imatrix(int type);

    [DllImport(NativeLibraries.GgmlBase, CallingConvention = CallingConvention.Cdecl)]
    private static extern long ggml_blck_size(int type);

    [DllImport(NativeLibraries.GgmlBase, CallingConvention = CallingConvention.Cdecl)]
    private static extern nuint ggml_type_size(int type);
}
