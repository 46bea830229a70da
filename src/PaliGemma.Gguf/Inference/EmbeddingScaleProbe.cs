namespace PaliGemma.Gguf.Inference;

/// <summary>
/// Finds out whether the loaded graph multiplies embedding inputs by sqrt(n_embd), as it does token
/// inputs: decode BOS as a token id, then its embedding row as-is and times sqrt(n_embd), and see
/// which row reproduces the token's logits.
/// </summary>
internal static class EmbeddingScaleProbe
{
    /// <summary>Relative agreement that counts as the same computation (F16 KV rounding stays far below it).</summary>
    private const double AgreementTolerance = 1e-3;

    public sealed record Result(bool GraphScalesEmbeddings, double RawRowDifference, double ScaledRowDifference);

    public static Result Run(LoadedWeights weights, ModelOptions options, string textModelPath)
    {
        int bos = (int)(weights.Text.Vocab.BOS ?? 2);
        int dimension = weights.Text.EmbeddingSize;
        using var decoder = new PrefixLmDecoder(weights.Text, options with { Precision = Precision.Exact }, 8, 1);
        float[] reference = decoder.DecodeToken(bos).ToArray();

        var row = new float[dimension];
        weights.TokenEmbeddings.ReadRow(bos, row);
        double tolerance = AgreementTolerance * (1 + reference.Max(Math.Abs));
        double raw = Difference(reference, DecodeRow(decoder, row));
        if (raw <= tolerance)
        {
            // The raw row already reproduces the token: the graph scales embeddings (today's upstream).
            return new Result(true, raw, double.NaN);
        }

        float scale = MathF.Sqrt(dimension);
        double scaled = Difference(reference, DecodeRow(decoder, row.Select(v => v * scale).ToArray()));
        if (scaled > tolerance)
        {
            // Neither known graph: picking the closer guess would run every request with wrong
            // image/text scaling, so refuse to load instead.
            throw new PaliGemmaException(
                $"{textModelPath}: this llama.cpp build's text graph treats embedding inputs in an unknown way " +
                $"(|Δlogit| {raw:G3} with the raw row, {scaled:G3} scaled by sqrt(n_embd)); see docs/DESIGN.md §6");
        }

        return new Result(false, raw, scaled);
    }

    private static float[] DecodeRow(PrefixLmDecoder decoder, float[] row)
    {
        decoder.Reset();
        return decoder.DecodePrefix(row, 1).ToArray();
    }

    private static double Difference(float[] a, float[] b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }

        return max;
    }
}
