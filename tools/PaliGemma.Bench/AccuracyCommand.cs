using System.CommandLine;
using System.Globalization;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Bench;

/// <summary>
/// <c>paligemma-bench accuracy</c>: how far quantized files drift from a reference GGUF of the same
/// checkpoint, as llama.cpp users measure it: the reference's greedy tokens are fed to both models and
/// every step's next-token distributions are compared (mean KL divergence, top-1 agreement).
/// </summary>
internal static class AccuracyCommand
{
    private static readonly string[] Images = ["astronaut.png", "chelsea.png", "shapes224.png"];
    private static readonly string[] Prompts = ["caption en", "answer en what is in the image?"];

    public static Command Build()
    {
        var reference = new Option<FileInfo>("--reference") { Required = true, Description = "Reference text GGUF (e.g. F16)" };
        var referenceMmproj = new Option<FileInfo>("--reference-mmproj") { Required = true, Description = "Its mmproj" };
        var candidates = new Option<FileInfo[]>("--candidate") { Required = true, Description = "Quantized text GGUFs", AllowMultipleArgumentsPerToken = true };
        var candidateMmproj = new Option<FileInfo>("--candidate-mmproj") { Required = true, Description = "The mmproj used with the candidates" };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 16, Description = "Teacher-forced steps per case" };
        var command = new Command("accuracy", "Mean KLD and top-1 agreement of quantized GGUFs against a reference GGUF") { reference, referenceMmproj, candidates, candidateMmproj, steps };
        command.SetAction(parsed =>
        {
            string imageFolder = Path.Combine(BenchCommand.RepositoryRoot(), "test_images");
            var cases = Images.SelectMany(i => Prompts.Select(p => (Image: Path.Combine(imageFolder, i), Prompt: p))).ToList();
            int n = parsed.GetValue(steps);
            List<(List<int> Tokens, List<float[]> Logits)> baseline;
            using (var model = PaliGemmaModel.Load(parsed.GetValue(reference)!.FullName, parsed.GetValue(referenceMmproj)!.FullName, new ModelOptions { Precision = Precision.Exact }))
            {
                baseline = cases.Select(c => Run(model, c.Image, c.Prompt, n, null)).ToList();
            }

            Console.WriteLine("| text | mmproj | mean KLD vs reference | max KLD | top-1 agreement | steps |");
            Console.WriteLine("|---|---|---|---|---|---|");
            foreach (var candidate in parsed.GetValue(candidates)!)
            {
                using var model = PaliGemmaModel.Load(candidate.FullName, parsed.GetValue(candidateMmproj)!.FullName, new ModelOptions { Precision = Precision.Exact });
                var kl = new List<double>();
                int agree = 0;
                for (int c = 0; c < cases.Count; c++)
                {
                    var ours = Run(model, cases[c].Image, cases[c].Prompt, n, baseline[c].Tokens);
                    for (int s = 0; s < n; s++)
                    {
                        kl.Add(KullbackLeibler(baseline[c].Logits[s], ours.Logits[s]));
                        agree += ArgMax(baseline[c].Logits[s]) == ArgMax(ours.Logits[s]) ? 1 : 0;
                    }
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {candidate.Name} | {parsed.GetValue(candidateMmproj)!.Name} | {kl.Average():E2} | {kl.Max():E2} | {100.0 * agree / kl.Count:F1}% | {kl.Count} |"));
            }

            return 0;
        });
        return command;
    }

    /// <summary>Logits of each step; the tokens fed back are <paramref name="forced"/>, or the greedy ones.</summary>
    private static (List<int> Tokens, List<float[]> Logits) Run(PaliGemmaModel model, string image, string prompt, int steps, List<int>? forced)
    {
        var prepared = ImagePreprocessor.Load(image, model.ImageSize);
        int[] text = model.TokenizePrompt(prompt);
        int prefix = model.ImageTokens + text.Length;
        using var decoder = model.CreateDecoder(prefix, steps);
        var logits = new List<float[]> { decoder.DecodePrefix(model.BuildPrefix(prepared, text, out _), prefix).ToArray() };
        var tokens = new List<int>();
        for (int s = 0; s + 1 < steps; s++)
        {
            int token = forced?[s] ?? ArgMax(logits[^1]);
            tokens.Add(token);
            logits.Add(decoder.DecodeToken(token).ToArray());
        }

        return (tokens, logits);
    }

    private static int ArgMax(float[] values) => Array.IndexOf(values, values.Max());

    private static double KullbackLeibler(float[] p, float[] q)
    {
        double LogSumExp(float[] x)
        {
            double max = x.Max();
            return Math.Log(x.Sum(v => Math.Exp(v - max))) + max;
        }

        double lp = LogSumExp(p), lq = LogSumExp(q), sum = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double a = p[i] - lp;
            sum += Math.Exp(a) * (a - (q[i] - lq));
        }

        return Math.Max(0, sum);
    }
}
