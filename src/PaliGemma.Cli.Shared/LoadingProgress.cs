namespace PaliGemma.Cli.Shared;

/// <summary>The text model's loading progress as a percentage rewritten on one terminal line (nothing when redirected).</summary>
public sealed class LoadingProgress(TextWriter output, bool interactive) : IProgress<float>
{
    private int _shown = -1;

    public void Report(float value)
    {
        int percent = (int)Math.Clamp(value * 100, 0, 100);
        if (!interactive || percent == _shown)
        {
            return;
        }

        _shown = percent;
        output.Write(percent < 100 ? $"\r  {percent,3}%" : "\r      \r");
    }
}
