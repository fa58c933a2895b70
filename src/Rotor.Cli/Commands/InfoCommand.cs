using System.CommandLine;
using System.Runtime.InteropServices;
using Rotor.Kernels;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor info</c>: the machine, the kernel paths it supports and the one in use.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var cmd = new Command("info", "Show the CPU, the kernel paths it supports, the path and thread count in use");
        cmd.SetAction(_ =>
        {
            Console.WriteLine($"rotor        {typeof(TernaryMatrix).Assembly.GetName().Version}");
            Console.WriteLine($"runtime      {RuntimeInformation.FrameworkDescription} {RuntimeInformation.ProcessArchitecture} on {RuntimeInformation.OSDescription}");
            Console.WriteLine($"processors   {Environment.ProcessorCount}");
            Console.WriteLine($"kernels      supported: {string.Join(", ", KernelSelector.Supported)}; best: {KernelSelector.Best}; in use: {KernelSelector.Current} (ROTOR_KERNEL to force)");
            Console.WriteLine($"threads      {CpuBackend.DefaultThreads()} (ROTOR_THREADS to set)");
            Console.WriteLine(CudaCommands.InfoLine());
            return 0;
        });
        return cmd;
    }
}
