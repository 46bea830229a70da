using PaliGemma.Gguf.Checkpoints;

namespace PaliGemma.Bench.Generation;

/// <summary>The element type the checkpoint is stored in, with its names in each file format.</summary>
/// <param name="Name">The command-line name.</param>
/// <param name="DType">The safetensors dtype.</param>
/// <param name="ElementSize">Bytes per element.</param>
/// <param name="TorchName">The <c>torch_dtype</c> config.json records.</param>
internal sealed record WeightFormat(string Name, TensorDType DType, int ElementSize, string TorchName)
{
    public static WeightFormat F32 { get; } = new("f32", TensorDType.F32, 4, "float32");

    public static WeightFormat BF16 { get; } = new("bf16", TensorDType.BF16, 2, "bfloat16");

    public static IReadOnlyList<WeightFormat> All { get; } = [BF16, F32];

    public static WeightFormat Get(string name) =>
        All.FirstOrDefault(f => f.Name == name) ?? throw new ArgumentException($"unknown dtype '{name}'", nameof(name));
}
