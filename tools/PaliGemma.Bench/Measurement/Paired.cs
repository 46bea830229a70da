namespace PaliGemma.Bench.Measurement;

/// <summary>
/// Paired measurements: A and B run alternately (A B A B ...), and a comparison is the median of
/// the per-pair ratios. The VM's memory bandwidth flips between two levels and other processes load
/// the CPU; a pair's two runs are seconds apart and see mostly the same machine, which runs minutes
/// apart do not.
/// </summary>
internal static class Paired
{
    public static List<(T A, T B)> Alternate<T>(int pairs, Func<T> a, Func<T> b)
    {
        var result = new List<(T, T)>(pairs);
        for (int i = 0; i < pairs; i++)
        {
            T first = a();
            result.Add((first, b()));
        }

        return result;
    }

    /// <summary>
    /// Several arms measured in rounds, the order rotating each round so that no arm always runs first or after
    /// the same other arm; one array of values a round, indexed by arm.
    /// </summary>
    public static List<double[]> Rotate(int rounds, int arms, Func<int, double> measure, Action<int, double[]>? onRound = null)
    {
        var result = new List<double[]>(rounds);
        for (int round = 0; round < rounds; round++)
        {
            var values = new double[arms];
            for (int k = 0; k < arms; k++)
            {
                int arm = (k + round) % arms;
                values[arm] = measure(arm);
            }

            result.Add(values);
            onRound?.Invoke(round, values);
        }

        return result;
    }

    /// <summary>The median over pairs of value(A) / value(B).</summary>
    public static double MedianRatio<T>(IEnumerable<(T A, T B)> pairs, Func<T, double> value) =>
        Median(pairs.Select(p => value(p.A) / value(p.B)));

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
