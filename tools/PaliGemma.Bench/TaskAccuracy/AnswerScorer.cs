using PaliGemma.Gguf.Tasks;

namespace PaliGemma.Bench.TaskAccuracy;

/// <summary>How one answer scored: right or not, and for detect the true boxes it found.</summary>
public readonly record struct AnswerScore(bool Correct, int TrueBoxes, int BoxesFound);

/// <summary>
/// Scores an answer against an evaluation case. Caption, count and colour: the answer must equal the
/// expected text and have ended (EOS). Detect: the answer is read with <see cref="DetectionParser"/>
/// into boxes in the picture's pixels; a true box (a shape of the asked kind drawn on the picture) is
/// found when a predicted box with the asked label overlaps it with IoU of at least
/// <see cref="MinimumIoU"/>, pairs matched one to one greedily from the highest IoU down. A detect
/// answer is right when it ended, has nothing but well-formed groups, finds every true box and has no
/// other box; for a shape not in the picture, when it is empty.
/// </summary>
public static class AnswerScorer
{
    /// <summary>The usual detection threshold (PASCAL VOC, the data README's "found with IoU ≥ 0.5").</summary>
    public const double MinimumIoU = 0.5;

    public static AnswerScore Score(EvaluationCase evaluation, string answer, bool ended)
    {
        if (evaluation.Task != "detect")
        {
            return new AnswerScore(ended && answer == evaluation.Expected, 0, 0);
        }

        string shape = evaluation.Prompt["detect ".Length..];
        var truth = evaluation.Image.Objects.Where(o => o.Shape == shape).Select(o => o.Box).ToList();
        var parsed = DetectionParser.ParseWithLeftovers(answer, evaluation.Image.Width, evaluation.Image.Height);
        var predicted = parsed.Objects.Where(o => o.Label == shape && o.IsValid).Select(o => o.Box).ToList();
        int found = MatchCount(truth, predicted);
        bool correct = ended && parsed.Leftovers.Count == 0 && found == truth.Count && parsed.Objects.Count == truth.Count;
        return new AnswerScore(correct, truth.Count, found);
    }

    /// <summary>Intersection over union of two boxes with exclusive far edges.</summary>
    public static double IoU(PixelBox a, PixelBox b)
    {
        long width = Math.Max(0, Math.Min(a.X2, b.X2) - Math.Max(a.X1, b.X1));
        long height = Math.Max(0, Math.Min(a.Y2, b.Y2) - Math.Max(a.Y1, b.Y1));
        long intersection = width * height;
        long union = ((long)a.Width * a.Height) + ((long)b.Width * b.Height) - intersection;
        return union > 0 ? (double)intersection / union : 0;
    }

    private static int MatchCount(List<PixelBox> truth, List<PixelBox> predicted)
    {
        var pairs = truth.SelectMany((t, i) => predicted.Select((p, j) => (i, j, IoU: IoU(t, p))))
            .Where(p => p.IoU >= MinimumIoU)
            .OrderByDescending(p => p.IoU);
        var usedTruth = new HashSet<int>();
        var usedPredicted = new HashSet<int>();
        foreach (var (i, j, _) in pairs)
        {
            if (!usedTruth.Contains(i) && !usedPredicted.Contains(j))
            {
                usedTruth.Add(i);
                usedPredicted.Add(j);
            }
        }

        return usedTruth.Count;
    }
}
