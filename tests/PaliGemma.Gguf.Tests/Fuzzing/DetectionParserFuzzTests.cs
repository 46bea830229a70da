using System.Diagnostics;
using System.Text;
using CsCheck;
using PaliGemma.Gguf.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Fuzzing;

/// <summary>
/// Long model answers built by repeating a random mix of detection fragments: the parser never
/// throws, and its time grows linearly with the text (model output is untrusted and can be long).
/// </summary>
public sealed class DetectionParserFuzzTests(ITestOutputHelper output)
{
    private const int ShortLength = 100_000;
    private const int ScaleFactor = 4;

    /// <summary>
    /// Linear time makes the 4x longer text take about 4x as long, quadratic 16x. The bound sits in
    /// between, with an absolute allowance so that timer noise on millisecond parses cannot fail it.
    /// </summary>
    private const double MaxGrowth = 10;

    private static readonly TimeSpan Allowance = TimeSpan.FromMilliseconds(40);

    [Fact]
    [Trait("Category", Fuzz.Category)]
    public void Long_answers_of_random_fragments_parse_without_throwing_in_linear_time()
    {
        var fragment = Gen.OneOf(
            Gen.Int[0, 9999].Select(b => $"<loc{b:D4}>"),
            Gen.Int[0, 999].Select(c => $"<seg{c:D3}>"),
            Gen.Int[0, 1023].Select(b => $"<loc{b:D4}><loc{b:D4}><loc{b:D4}>"),
            Gen.Int[0, 127].Select(c => string.Concat(Enumerable.Repeat($"<seg{c:D3}>", 15))),
            Gen.OneOfConst(
                " ; ", ";", " ", "\n", "\t", "\u00A0", "<loc", "<seg", "9999>", "0123>", ">", "<", "<loc0", "<loc012", "<loc0123", "<seg04",
                "<<loc0001>", "<loc-001>", "<loc１２３４>", "<LOC0001>", "cat", "big dog", "猫", "🐱", "\uD800", "\uDC00", "\0", "é", "label with ; semicolon"),
            Gen.String[0, 5]);
        var gen = Gen.Select(fragment.Array[1, 40].Select(string.Concat), Gen.Int[1, 5000], Gen.Int[1, 5000])
            .Where((pattern, _, _) => pattern.Length > 0);

        // One thread: the timings compare two parses of the same case and must not share the CPU.
        gen.Sample(
            (pattern, width, height) =>
            {
                string text = Repeat(pattern, ShortLength);
                string longer = Repeat(pattern, ShortLength * ScaleFactor);
                var shortTime = Time(text, width, height);
                var longTime = Time(longer, width, height);
                if (longTime > shortTime * MaxGrowth + Allowance)
                {
                    throw new FuzzFailure($"{longer.Length} characters took {longTime.TotalMilliseconds:F1} ms, {text.Length} took {shortTime.TotalMilliseconds:F1} ms: not linear");
                }

                return longTime.TotalMilliseconds switch
                {
                    < 5 => "under 5 ms for 400k characters",
                    < 50 => "5-50 ms",
                    _ => "over 50 ms",
                };
            },
            output.WriteLine,
            iter: Fuzz.Iterations(150),
            threads: 1,
            print: t => $"pattern \"{t.Item1}\" ({t.Item1.Length} characters), {t.Item2} x {t.Item3}");
    }

    /// <summary>The better of two guarded parses: a GC pause in one should not look like quadratic time.</summary>
    private static TimeSpan Time(string text, int width, int height)
    {
        var best = TimeSpan.MaxValue;
        for (int attempt = 0; attempt < 2; attempt++)
        {
            var clock = new Stopwatch();
            var thrown = Fuzz.Guard($"DetectionParser.Parse of {text.Length} characters", () =>
            {
                clock.Start();
                DetectionParser.Parse(text, width, height);
                clock.Stop();
            });
            if (thrown is not null)
            {
                throw new FuzzFailure($"DetectionParser.Parse threw {thrown.GetType().FullName}: {thrown.Message}", thrown);
            }

            best = clock.Elapsed < best ? clock.Elapsed : best;
        }

        return best;
    }

    private static string Repeat(string pattern, int length)
    {
        var text = new StringBuilder(length + pattern.Length);
        while (text.Length < length)
        {
            text.Append(pattern);
        }

        return text.ToString(0, length);
    }
}
