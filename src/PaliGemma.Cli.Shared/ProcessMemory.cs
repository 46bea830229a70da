namespace PaliGemma.Cli.Shared;

/// <summary>The process's peak resident memory, as the kernel counts it (VmHWM).</summary>
public static class ProcessMemory
{
    public static long? PeakResidentBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }

        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return process.PeakWorkingSet64 > 0 ? process.PeakWorkingSet64 : null;
    }
}
