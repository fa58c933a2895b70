using System.CommandLine;
using System.Runtime.InteropServices;
using Rotor.Kernels;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor info [PATH]</c>: the machine, the kernel paths it supports and the one in use; with a model, its
/// architecture, shapes, weight types and the memory it will take; with an index, its settings and the memory it will
/// map, read at open and touch a query. Models and indexes are described from their headers, before anything is loaded.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var model = new Argument<string?>("PATH") { Description = "a language model (GGUF file, Hugging Face folder, llama2.c checkpoint) or an index (.rix file, RAG index folder): what it is and the memory it will take, from its headers (nothing is loaded)", Arity = ArgumentArity.ZeroOrOne };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file for a model that carries none" };
        var head = LmCommands.InfoLmHeadOption();
        var cmd = new Command("info", "Show the CPU, the kernel paths it supports, the path and thread count in use; or what a model or an index is and the memory it will take, before loading it");
        cmd.Arguments.Add(model);
        cmd.Options.Add(tokenizer);
        cmd.Options.Add(head);
        cmd.SetAction(r =>
        {
            if (r.GetValue(model) is { } path)
            {
                if (Directory.Exists(path) && File.Exists(Path.Combine(path, Rotor.Rag.Pipeline.RagIndex.ManifestFile))) return IndexInfo.Folder(path);
                if (IndexInfo.IsIndexFile(path)) return IndexInfo.File(path);
                return LmCommands.Info(path, r.GetValue(tokenizer), r.GetValue(head));
            }
            Console.WriteLine($"rotor        {typeof(TernaryMatrix).Assembly.GetName().Version}");
            Console.WriteLine($"runtime      {RuntimeInformation.FrameworkDescription} {RuntimeInformation.ProcessArchitecture} on {RuntimeInformation.OSDescription}");
            Console.WriteLine($"processors   {Environment.ProcessorCount}");
            Console.WriteLine($"kernels      {Try(() => $"supported: {string.Join(", ", KernelSelector.Supported)}; best: {KernelSelector.Best}; in use: {KernelSelector.Current} (ROTOR_KERNEL to force)")}");
            Console.WriteLine($"avx512 vnni  {Try(() => KernelSelector.Avx512VnniUnavailableReason is { } why ? "not used: " + why : "used: vpdpbusd kernels generated at start-up")}");
            Console.WriteLine($"threads      {Try(() => $"{Rotor.Threading.ThreadCount.Default} (from {Rotor.Threading.ThreadCount.Source}; --threads of a command, else ROTOR_THREADS, else every processor)")}");
            Console.WriteLine($"huge pages   {HugePagesLine()}");
            Console.WriteLine(CudaCommands.InfoLine());
            Console.WriteLine($"embeddings   {Try(() => Rotor.Rag.Embeddings.SentenceEmbedder.CudaUnavailableReason() is { } why ? $"on the CPU (ONNX Runtime); --device cuda would fall back: {why}" : "on the CPU (ONNX Runtime), or the GPU with --device cuda (ONNX Runtime's CUDA provider)")}");
            return 0;
        });
        return cmd;
    }

    // A line of the report; a setting this machine or environment cannot honour (ROTOR_KERNEL=avx512 without AVX-512,
    // ROTOR_THREADS=zero) is reported on its line, so that info still shows everything else.
    private static string Try(Func<string> line)
    {
        try { return line(); }
        catch (Exception e) when (ErrorPolicy.Describe(e) is { } why) { return $"unusable: {why}"; }
    }

    /// <summary>Whether weight matrices end up in 2 MiB pages: Rotor advises them (docs/KERNELS.md), the kernel decides.</summary>
    internal static string HugePagesLine()
    {
        if (Environment.GetEnvironmentVariable("ROTOR_HUGEPAGES") == "0") return "not used for weights: ROTOR_HUGEPAGES=0";
        if (!OperatingSystem.IsLinux()) return "not used for weights: Linux transparent huge pages only";
        const string path = "/sys/kernel/mm/transparent_hugepage/enabled";
        string mode;
        try { mode = File.ReadAllText(path).Trim(); }
        catch (IOException) { return $"not used for weights: {path} unreadable"; }
        catch (UnauthorizedAccessException) { return $"not used for weights: {path} unreadable"; }
        // The selected mode is in brackets: "always [madvise] never".
        int a = mode.IndexOf('['), b = mode.IndexOf(']');
        string selected = a >= 0 && b > a ? mode[(a + 1)..b] : mode;
        return selected is "always" or "madvise"
            ? $"weights of 256 KiB or more advised for 2 MiB pages (transparent huge pages: {selected}; ROTOR_HUGEPAGES=0 to turn off)"
            : $"not used for weights: transparent huge pages are '{selected}' ({path})";
    }
}
