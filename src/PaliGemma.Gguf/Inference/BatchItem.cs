namespace PaliGemma.Gguf.Inference;

/// <summary>One picture and the prompts to ask about it; the vision tower runs once for all of them.</summary>
/// <param name="ImagePath">Path of the picture.</param>
/// <param name="Prompts">Prompts, answered in this order.</param>
public sealed record BatchItem(string ImagePath, IReadOnlyList<string> Prompts);

/// <summary>
/// One (picture, prompt) answer of a batch: <see cref="Result"/> when it ran, <see cref="Error"/>
/// (a one-line message) when the picture or the prompt was refused. A refused item does not stop the batch.
/// </summary>
public sealed record BatchResult(string ImagePath, string Prompt, GenerationResult? Result, string? Error)
{
    public bool Succeeded => Result is not null;
}
