using PaliGemma.Gguf.Inference;

namespace PaliGemma.Gguf.Tests.Infrastructure;

/// <summary>
/// Runs a case the way the reference's logits were made: the prefix, then the reference's own
/// greedy tokens fed back one by one, collecting each step's logits.
/// </summary>
public static class TeacherForcing
{
    public const int Steps = 16;

    public static List<float[]> Logits(PaliGemmaModel model, GoldenCase golden) =>
        Logits(model, GoldenData.ImagePath(golden.Image), golden.Prompt, golden.GreedyTokens.AsSpan(0, Steps - 1));

    /// <summary>
    /// The logits after the prefix and after each forced token: forced.Length + 1 rows. The native work runs on the
    /// model's thread: the test models are shared between test classes that run in parallel, and two threads in
    /// one vision context corrupt each other's embeddings (a parity case once failed with a wrong best token so).
    /// </summary>
    public static List<float[]> Logits(PaliGemmaModel model, string imagePath, string prompt, ReadOnlySpan<int> forced)
    {
        var image = ImagePreprocessor.Load(imagePath, model.ImageSize);
        int[] text = model.TokenizePrompt(prompt);
        int[] tokens = forced.ToArray();
        return model.OnModelThread(() =>
        {
            float[] rows = model.BuildPrefix(image, text, out _);
            int prefixLength = model.ImageTokens + text.Length;
            using var decoder = model.CreateDecoder(prefixLength, tokens.Length + 1);
            var logits = new List<float[]> { decoder.DecodePrefix(rows, prefixLength).ToArray() };
            foreach (int token in tokens)
            {
                logits.Add(decoder.DecodeToken(token).ToArray());
            }

            return logits;
        });
    }

    /// <summary>
    /// The reference's logits of one step, as llama.cpp computes them: transformers 5 leaves out
    /// Gemma 2's final soft-capping, which llama.cpp (like big_vision) applies: 30 * tanh(x / 30).
    /// </summary>
    public static float[] ReferenceLogits(GoldenCase golden, float[] allSteps, int step)
    {
        int vocabulary = allSteps.Length / Steps;
        var row = allSteps.AsSpan(step * vocabulary, vocabulary).ToArray();
        if (GoldenData.Model(golden.Model).IsGemma2)
        {
            for (int i = 0; i < row.Length; i++)
            {
                row[i] = (float)(30 * Math.Tanh(row[i] / 30.0));
            }
        }

        return row;
    }
}
