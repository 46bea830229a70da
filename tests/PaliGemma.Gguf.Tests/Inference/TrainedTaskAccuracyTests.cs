using PaliGemma.Bench.TaskAccuracy;
using PaliGemma.Gguf.Conversion;
using PaliGemma.Gguf.Inference;
using PaliGemma.Gguf.Tasks;
using PaliGemma.Gguf.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PaliGemma.Gguf.Tests.Inference;

/// <summary>
/// What each file type costs on a task: the trained tiny model converted to every text type with an
/// F16 and a Q8_0 mmproj answers the whole evaluation set greedily (exact mode); each row counts the
/// answers identical to the float32 PyTorch reference's and the right answers per task, prints the
/// README table row (the code of <c>paligemma-bench trained-accuracy</c>), and is held to a band
/// around what it measured.
/// </summary>
[Trait("Category", "Trained")]
public sealed class TrainedTaskAccuracyTests(ITestOutputHelper output)
{
    private static readonly Lazy<EvaluationSet> Set = new(() => EvaluationSet.Load(TrainedEval.Folder));

    /// <summary>
    /// What each row measured on the in-repository evaluation set (155 cases: 28 caption, 28 count,
    /// 26 colour, 73 detect over 57 true boxes; 2 threads, AVX2): answers identical to the reference's,
    /// right answers per task, true boxes found.
    /// </summary>
    private sealed record Measured(string Text, string Mmproj, int Agreeing, int Caption, int Count, int Colour, int Detect, int BoxesFound);

    private static readonly Measured[] Rows =
    [
        new("f32", "f16", 155, 5, 28, 21, 18, 24),
        new("f32", "q8_0", 150, 5, 28, 21, 18, 24),
        new("f16", "f16", 154, 5, 28, 21, 18, 24),
        new("f16", "q8_0", 150, 5, 28, 21, 18, 24),
        new("bf16", "f16", 150, 5, 28, 21, 18, 25),
        new("bf16", "q8_0", 147, 5, 28, 21, 18, 25),
        new("q8_0", "f16", 139, 5, 28, 21, 17, 23),
        new("q8_0", "q8_0", 139, 5, 28, 21, 17, 23),
        new("q6_k", "f16", 138, 5, 28, 21, 18, 24),
        new("q6_k", "q8_0", 135, 5, 28, 21, 18, 25),
        new("q5_k_m", "f16", 130, 5, 28, 21, 17, 24),
        new("q5_k_m", "q8_0", 128, 5, 28, 21, 17, 24),
        new("q4_k_m", "f16", 130, 5, 28, 21, 17, 23),
        new("q4_k_m", "q8_0", 127, 5, 28, 21, 17, 23),
        new("q4_0", "f16", 120, 5, 28, 21, 17, 23),
        new("q4_0", "q8_0", 121, 5, 28, 21, 17, 24),
    ];

    /// <summary>
    /// The band: a row may lose or gain this many answers against what it measured, in agreement and
    /// in each task. Another thread count or SIMD path reorders ggml's float sums (~1e-5 on a logit),
    /// which can flip a step only where two tokens are that close.
    /// </summary>
    private const int Slack = 2;

    public static TheoryData<string, string> Types()
    {
        var data = new TheoryData<string, string>();
        foreach (var row in Rows)
        {
            data.Add(row.Text, row.Mmproj);
        }

        return data;
    }

    [Fact]
    public void The_scorer_marks_every_expected_answer_right_and_the_reference_as_its_data_says()
    {
        var set = Set.Value;

        Assert.All(set.Cases, c => Assert.True(AnswerScorer.Score(c, c.Expected, ended: true).Correct, $"{c.Image.Name}: {c.Prompt}: the expected answer scores wrong"));
        Assert.All(set.Cases, c => Assert.False(AnswerScorer.Score(c, c.Expected, ended: false).Correct, "an answer that did not end scores right"));
        var reference = TaskAccuracyTable.Reference(set);
        output.WriteLine(TaskAccuracyTable.Header);
        output.WriteLine(reference.ToMarkdown());

        // Caption, count and colour are exact matches, as the data's own "correct" flag.
        foreach (string task in new[] { "caption", "count", "color" })
        {
            var cases = TrainedEval.Cases.Where(c => c.Task == task).ToList();
            Assert.Equal(new TaskTally(cases.Count(c => c.ReferenceIsCorrect), cases.Count), reference.Task(task));
        }

        Assert.Equal(TrainedEval.Images.Sum(i => i.Objects.Count), reference.TrueBoxes);
    }

    [Fact]
    public void A_detect_answer_is_right_only_with_every_box_found_at_IoU_one_half_and_no_other()
    {
        var c = Set.Value.Cases.First(c => c.Task == "detect" && c.Expected.Contains(" ; ", StringComparison.Ordinal));
        string shape = c.Prompt["detect ".Length..];
        var boxes = DetectionParser.Parse(c.Expected, c.Image.Width, c.Image.Height);
        string first = c.Expected.Split(" ; ")[0], second = c.Expected.Split(" ; ")[1];

        Assert.True(AnswerScorer.Score(c, $"{second} ; {first}", true).Correct); // order does not matter
        Assert.Equal(new AnswerScore(false, 2, 1), AnswerScorer.Score(c, first, true)); // one box missing
        Assert.False(AnswerScorer.Score(c, $"{first} ; {second} ; {first}", true).Correct); // one box too many
        Assert.False(AnswerScorer.Score(c, c.Expected.Replace(shape, "blob", StringComparison.Ordinal), true).Correct); // wrong label
        Assert.False(AnswerScorer.Score(c, c.Expected + " ; <loc0001>", true).Correct); // a broken group

        // Widen the first box until its IoU with the truth drops below one half.
        var truth = boxes[0].Box;
        var half = truth with { X2 = truth.X1 + (2 * truth.Width) + 2 };
        Assert.InRange(AnswerScorer.IoU(truth, half), 0, AnswerScorer.MinimumIoU);
        Assert.Equal(1.0, AnswerScorer.IoU(truth, truth));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public async Task Accuracy_per_type(string textType, string mmprojType)
    {
        var text = OutputType.Parse(textType, OutputType.TextTypes, "--outtype");
        var mmproj = OutputType.Parse(mmprojType, OutputType.MmprojTypes, "--mmproj-type");
        var files = TestModels.ConvertedTrained(text, mmproj);
        TaskAccuracyRow row;
        using (var model = PaliGemmaModel.Load(files.TextModelPath, files.MmprojPath, new ModelOptions { Precision = Precision.Exact }))
        {
            row = await TaskAccuracyTable.MeasureAsync(model, Set.Value, textType, mmprojType);
        }

        output.WriteLine(TaskAccuracyTable.Header);
        output.WriteLine(row.ToMarkdown());
        if (!TrainedEval.IsInRepository)
        {
            output.WriteLine($"PALIGEMMA_TRAINED_EVAL names another folder: the bands measured on tests/fixtures/trained/eval do not apply to {TrainedEval.Folder}");
            return;
        }

        var measured = Rows.Single(r => r.Text == textType && r.Mmproj == mmprojType);
        Within("agreement with the reference", row.Agreeing!.Value, measured.Agreeing);
        Within("caption", row.Task("caption").Correct, measured.Caption);
        Within("count", row.Task("count").Correct, measured.Count);
        Within("colour", row.Task("color").Correct, measured.Colour);
        Within("detect", row.Task("detect").Correct, measured.Detect);
        Within("true boxes found", row.BoxesFound, measured.BoxesFound);

        void Within(string what, int value, int expected) =>
            Assert.True(Math.Abs(value - expected) <= Slack, $"{textType} / {mmprojType}: {what} {value}, outside {expected} ± {Slack} (measured)");
    }
}
