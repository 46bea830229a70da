namespace PaliGemma.Gguf.Tasks;

/// <summary>One <c>&lt;loc&gt;</c> group of a detection or segmentation answer.</summary>
/// <param name="Label">The text after the tokens, trimmed; "" when the model gave none.</param>
/// <param name="Box">The bins mapped onto the original picture, clamped to it.</param>
/// <param name="Bins">The four raw location bins in the model's order: y1, x1, y2, x2.</param>
/// <param name="SegmentCodes">
/// The 16 raw <c>&lt;segNNN&gt;</c> codebook indices (0..127) of a segmentation answer, for a mask decoder;
/// null for a detection.
/// </param>
/// <param name="IsValid">
/// False when the box is empty once in pixels (x2 &lt;= x1 or y2 &lt;= y1): the model wrote the corners in the
/// wrong order, or the picture is too small for the bins to land on different pixels. Such boxes are not drawn.
/// </param>
public sealed record DetectedObject(string Label, PixelBox Box, int[] Bins, int[]? SegmentCodes, bool IsValid)
{
    /// <summary>
    /// The object's mask, once a <see cref="Segmentation.MaskDecoder"/> has decoded <see cref="SegmentCodes"/>
    /// (see <see cref="Segmentation.MaskDecoder.AddMasks"/>); null for a detection, an invalid box, or before decoding.
    /// </summary>
    public Segmentation.ObjectMask? Mask { get; init; }
}
