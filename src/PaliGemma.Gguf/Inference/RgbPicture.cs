namespace PaliGemma.Gguf.Inference;

/// <summary>A decoded picture as the model's preprocessing sees it: 8-bit RGB, row-major, R G B interleaved.</summary>
/// <param name="Width">Pixels per row.</param>
/// <param name="Height">Rows.</param>
/// <param name="Rgb">Width * Height * 3 bytes.</param>
internal sealed record RgbPicture(int Width, int Height, byte[] Rgb);
