namespace PaliGemma.Bench.Measurement;

/// <summary>This process's peak resident memory (VmHWM).</summary>
internal static class PeakRss
{
    public static long Bytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line[6..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }
}
