using System.Globalization;
using PaliGemma.Gguf.Gguf;
using PaliGemma.Gguf.Inference;

namespace PaliGemma.Bench.TaskAccuracy;

/// <summary>Right answers out of the cases of one task.</summary>
public readonly record struct TaskTally(int Correct, int Cases);

/// <summary>
/// One row of the task-accuracy table: how many greedy answers equal the float32 PyTorch reference's
/// token for token (their end included), and how many are right, per task.
/// </summary>
/// <param name="Agreeing">Answers identical to the reference's; null for the reference's own row.</param>
/// <param name="StoredAs">What the text GGUF's 2-D weights are stored as (e.g. "Q5_0 ×15, Q4_K ×3"); null for the reference.</param>
public sealed record TaskAccuracyRow(string Text, string Mmproj, int Cases, int? Agreeing, IReadOnlyDictionary<string, TaskTally> Tasks, int TrueBoxes, int BoxesFound, string? StoredAs)
{
    public TaskTally Task(string name) => Tasks.TryGetValue(name, out var tally) ? tally : default;

    public string ToMarkdown()
    {
        string agreement = Agreeing is { } a ? string.Create(CultureInfo.InvariantCulture, $"{a}/{Cases} ({100.0 * a / Cases:F1}%)") : "—";
        string tasks = string.Join(" | ", EvaluationSet.Tasks.Select(t => string.Create(CultureInfo.InvariantCulture, $"{Task(t).Correct}/{Task(t).Cases}")));
        return string.Create(CultureInfo.InvariantCulture, $"| {Text} | {Mmproj} | {agreement} | {tasks} | {BoxesFound}/{TrueBoxes} | {StoredAs ?? "—"} |");
    }
}

/// <summary>
/// Task accuracy of a model on an <see cref="EvaluationSet"/>, shared by
/// <c>paligemma-bench trained-accuracy</c> and the test that holds each row to a band: every case
/// answered greedily through the batch API (each picture through the vision tower once), scored by
/// <see cref="AnswerScorer"/>.
/// </summary>
public static class TaskAccuracyTable
{
    public const string Header =
        "| text | mmproj | same answer as the F32 reference | caption | count | colour | detect | true boxes found (IoU ≥ 0.5) | text 2-D weights stored as |\n" +
        "|---|---|---|---|---|---|---|---|---|";

    /// <summary>The float32 PyTorch reference's own answers, scored by the same rule.</summary>
    public static TaskAccuracyRow Reference(EvaluationSet set) =>
        Tally("PyTorch float32 reference", "", set, set.Cases.Select(c => (c, c.ReferenceText, c.ReferenceEnded, (bool?)null)).ToList(), null);

    public static async Task<TaskAccuracyRow> MeasureAsync(PaliGemmaModel model, EvaluationSet set, string text, string mmproj, CancellationToken cancellationToken = default)
    {
        var options = new GenerationOptions { MaxNewTokens = set.MaxNewTokens };
        var pictures = set.Cases.Select(c => c.Image).Distinct().ToList();
        var items = pictures.Select(p => new BatchItem(p.Path, [.. set.Cases.Where(c => c.Image == p).Select(c => c.Prompt)]));
        var answers = new List<(EvaluationCase Case, string Answer, bool Ended, bool? Agrees)>();
        await foreach (var result in model.GenerateBatchAsync(items, options, cancellationToken))
        {
            var evaluation = set.Cases.Single(c => c.Image.Path == result.ImagePath && c.Prompt == result.Prompt);
            var generated = result.Result ?? throw new InvalidOperationException($"{result.ImagePath}, '{result.Prompt}': {result.Error}");
            bool ended = generated.StopReason == StopReason.EndOfSequence;
            // The reference's tokens end with EOS exactly when it ended; ours leave EOS out.
            var referenceAnswer = evaluation.ReferenceEnded ? evaluation.ReferenceTokens.Take(evaluation.ReferenceTokens.Count - 1) : evaluation.ReferenceTokens;
            answers.Add((evaluation, generated.Text, ended, ended == evaluation.ReferenceEnded && generated.Tokens.SequenceEqual(referenceAnswer)));
        }

        return Tally(text, mmproj, set, answers, StoredAs(model.TextModelPath));
    }

    /// <summary>The types of the text GGUF's 2-D tensors and how many of each, most frequent first.</summary>
    public static string StoredAs(string textModelPath) => string.Join(", ", GgufFile.Open(textModelPath).Tensors
        .Where(t => t.Dimensions.Length == 2)
        .GroupBy(t => t.Type)
        .OrderByDescending(g => g.Count()).ThenBy(g => g.Key.ToString(), StringComparer.Ordinal)
        .Select(g => $"{g.Key} ×{g.Count()}"));

    private static TaskAccuracyRow Tally(string text, string mmproj, EvaluationSet set, List<(EvaluationCase Case, string Answer, bool Ended, bool? Agrees)> answers, string? storedAs)
    {
        if (answers.Count != set.Cases.Count)
        {
            throw new InvalidOperationException($"{answers.Count} answers for {set.Cases.Count} cases");
        }

        var scores = answers.Select(a => (a.Case, Score: AnswerScorer.Score(a.Case, a.Answer, a.Ended))).ToList();
        var tasks = EvaluationSet.Tasks.ToDictionary(
            t => t,
            t => new TaskTally(scores.Count(s => s.Case.Task == t && s.Score.Correct), scores.Count(s => s.Case.Task == t)));
        int? agreeing = answers.All(a => a.Agrees is not null) ? answers.Count(a => a.Agrees == true) : null;
        return new TaskAccuracyRow(text, mmproj, answers.Count, agreeing, tasks, scores.Sum(s => s.Score.TrueBoxes), scores.Sum(s => s.Score.BoxesFound), storedAs);
    }
}
