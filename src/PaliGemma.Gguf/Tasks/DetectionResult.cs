namespace PaliGemma.Gguf.Tasks;

/// <summary>What <see cref="DetectionParser.ParseWithLeftovers"/> made of a model answer.</summary>
/// <param name="Objects">The complete groups, in the order the model wrote them.</param>
/// <param name="Leftovers">
/// The stretches of text between and around the groups that are not part of one (a truncated group, a group
/// with fewer than four locations, prose), trimmed of whitespace and stray " ; " separators; empty stretches
/// are left out. Nothing the model wrote is dropped silently.
/// </param>
public sealed record DetectionResult(IReadOnlyList<DetectedObject> Objects, IReadOnlyList<string> Leftovers);
