using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;

namespace PaliGemma.Gguf.Tests.Hostile;

/// <summary>
/// Inputs on which llama.cpp / mtmd would abort the whole process (GGML_ASSERT, abort()) or compute
/// garbage: the CLI, run as a child process, must answer each with one line and exit code 1, never
/// 134 (SIGABRT) or 139 (SIGSEGV).
/// </summary>
public sealed class CraftedModelTests
{
    private static readonly ConversionResult Tiny = TestModels.Converted("tiny-paligemma-224");

    public static TheoryData<string> Problems() => new()
    {
        "projection-size-differs",
        "bf16-patch-embedding",
        "no-image-mean",
        "position-grid-mismatch",
        "wrong-metadata-type",
        "zero-image-size",
        "f16-bias",
        "negative-epsilon",
        "unsupported-text-architecture",
        "mmproj-as-text-model",
        "context-too-small",
    };

    [Theory]
    [MemberData(nameof(Problems))]
    public void The_cli_refuses_with_one_line_and_exit_code_1(string problem)
    {
        string folder = TestModels.NewFolder(problem);
        string text = Tiny.TextModelPath, mmproj = Tiny.MmprojPath;
        string[] extra = [];
        string expected;
        switch (problem)
        {
            case "projection-size-differs":
                mmproj = CheckpointConverter.Convert(SyntheticCheckpoint.WideGemma, new ConversionOptions { OutputDirectory = folder, TextType = OutputType.F32, MmprojType = OutputType.F32 }).MmprojPath;
                expected = "not from the same checkpoint";
                break;
            case "bf16-patch-embedding":
                mmproj = GgufRewriter.Rewrite(mmproj, Path.Combine(folder, "m.gguf"), tensorType: t => t.Name == "v.patch_embd.weight" ? GgmlType.BF16 : t.Type);
                expected = "F16 or F32";
                break;
            case "no-image-mean":
                mmproj = GgufRewriter.Rewrite(mmproj, Path.Combine(folder, "m.gguf"), metadata: (k, v) => k == "clip.vision.image_mean" ? null : v);
                expected = "image_mean";
                break;
            case "position-grid-mismatch":
                mmproj = GgufRewriter.Rewrite(mmproj, Path.Combine(folder, "m.gguf"), metadata: (k, v) => k == "clip.vision.image_size" ? GgufValue.Of(448u) : v);
                expected = "v.position_embd.weight";
                break;
            case "wrong-metadata-type":
                mmproj = GgufRewriter.Rewrite(mmproj, Path.Combine(folder, "m.gguf"), metadata: (k, v) => k == "clip.vision.patch_size" ? GgufValue.Of(14) : v);
                expected = "UInt32";
                break;
            case "zero-image-size":
                // The picture is sized from this value: it must be checked before the picture is read.
                mmproj = GgufRewriter.Rewrite(mmproj, Path.Combine(folder, "m.gguf"), metadata: (k, v) => k == "clip.vision.image_size" ? GgufValue.Of(0u) : v);
                expected = "clip.vision.image_size = 0";
                break;
            case "f16-bias":
                // Found by ModelLoadFuzzTests: ggml's add aborts on an F16 second operand.
                mmproj = GgufRewriter.Rewrite(mmproj, Path.Combine(folder, "m.gguf"), tensorType: t => t.Name == "v.blk.0.ln1.bias" ? GgmlType.F16 : t.Type);
                expected = "must be F32";
                break;
            case "negative-epsilon":
                // Found by ModelLoadFuzzTests: ggml's norm GGML_ASSERTs eps >= 0.
                mmproj = GgufRewriter.Rewrite(mmproj, Path.Combine(folder, "m.gguf"), metadata: (k, v) => k == "clip.vision.attention.layer_norm_epsilon" ? GgufValue.Of(-1f) : v);
                expected = "finite float32 >= 0";
                break;
            case "unsupported-text-architecture":
                text = GgufRewriter.Rewrite(text, Path.Combine(folder, "t.gguf"), metadata: (k, v) => k == "general.architecture" ? GgufValue.Of("llama") : v);
                expected = "unsupported text architecture 'llama'";
                break;
            case "mmproj-as-text-model":
                text = mmproj;
                expected = "mmproj";
                break;
            default:
                extra = ["-n", "9000"];
                expected = "context";
                break;
        }

        var result = CliProcess.Run("paligemma", ["run", "--model", text, "--mmproj", mmproj, "-i", GoldenData.ImagePath("chelsea"), "-p", "caption en", .. extra]);

        Assert.True(result.ExitCode == 1, $"exit code {result.ExitCode}: {result.StandardError}");
        Assert.Contains(expected, result.SingleErrorLine(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_long_prompt_is_one_non_causal_batch_without_a_native_abort()
    {
        // llama.cpp aborts when a non-causal batch exceeds n_ubatch (512 by default): the batch is sized to the prefix.
        string prompt = "answer en " + string.Join(' ', Enumerable.Repeat("what is in the image", 150));

        var result = CliProcess.Run("paligemma", "run", "--model", Tiny.TextModelPath, "--mmproj", Tiny.MmprojPath, "-i", GoldenData.ImagePath("chelsea"), "-p", prompt, "-n", "2", "--json");

        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Contains("\"prompt_tokens\":", result.StandardOutput, StringComparison.Ordinal);
    }
}
