using System.Runtime.InteropServices;
using LLama.Native;

namespace PaliGemma.Gguf.Native;

/// <summary>The parts of libmtmd LLamaSharp does not wrap: encoding one image chunk and reading its embeddings.</summary>
internal static class MtmdNative
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void LogCallback(int level, [MarshalAs(UnmanagedType.LPUTF8Str)] string text, IntPtr userData);

    /// <summary>
    /// Runs the vision tower and projector on an image chunk and copies out the embeddings
    /// (row-major, tokens x n_embd).
    /// </summary>
    public static unsafe float[] EncodeImage(SafeMtmdModelHandle context, SafeMtmdInputChunk chunk, int tokens, int embeddingSize)
    {
        bool added = false;
        context.DangerousAddRef(ref added);
        try
        {
            IntPtr handle = context.DangerousGetHandle();
            int status = mtmd_encode_chunk(handle, chunk.NativePtr);
            if (status != 0)
            {
                throw new PaliGemmaException($"the vision encoder failed (mtmd_encode_chunk returned {status})");
            }

            float* output = mtmd_get_output_embd(handle);
            if (output == null)
            {
                throw new PaliGemmaException("the vision encoder returned no embeddings");
            }

            return new ReadOnlySpan<float>(output, checked(tokens * embeddingSize)).ToArray();
        }
        finally
        {
            if (added)
            {
                context.DangerousRelease();
            }
        }
    }

    [DllImport(NativeLibraries.Mtmd, CallingConvention = CallingConvention.Cdecl)]
    public static extern void mtmd_log_set(LogCallback callback, IntPtr userData);

    [DllImport(NativeLibraries.Mtmd, CallingConvention = CallingConvention.Cdecl)]
    private static extern int mtmd_encode_chunk(IntPtr context, IntPtr chunk);

    [DllImport(NativeLibraries.Mtmd, CallingConvention = CallingConvention.Cdecl)]
    private static extern unsafe float* mtmd_get_output_embd(IntPtr context);
}
