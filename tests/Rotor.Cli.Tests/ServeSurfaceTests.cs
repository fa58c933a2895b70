using System.Diagnostics;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Rotor.Cli.Tests;

/// <summary><c>rotor serve</c> as a process: bad options give one line and exit 2; a server started on a free port
/// answers a chat request and exits 0 on SIGTERM after finishing it.</summary>
public sealed partial class ServeSurfaceTests
{
    internal static string? Stories()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Rotor.sln")))
            {
                string f = Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", "data", "lm", "stories260K.bin"));
                return File.Exists(f) && File.Exists(Path.Combine(Path.GetDirectoryName(f)!, "tok512.bin")) ? f : null;
            }
        return null;
    }

    [Fact]
    public void BadOptionsGiveOneLineAndExit2()
    {
        var (code, output) = TrainEvalEndToEndTests.Rotor("serve");
        Assert.Equal(2, code);
        Assert.Equal("rotor: name the model: rotor serve --model MODEL", output.Trim());
        (code, output) = TrainEvalEndToEndTests.Rotor("serve", "--model", "/nonexistent/model.gguf", "--no-embeddings");
        Assert.Equal(2, code);
        Assert.StartsWith("rotor: /nonexistent/model.gguf: no such file", output.Trim());
        Assert.Single(output.Trim().Split('\n'));
    }

    [StoriesFact]
    public async Task ServesAChatRequestAndStopsOnSigterm()
    {
        string model = Stories()!;
        var (code, output) = TrainEvalEndToEndTests.Rotor("serve", "--model", model, "--port", "70000", "--no-embeddings");
        Assert.Equal(2, code);
        Assert.Contains("rotor: --port 70000 must be in 0..65535", output);

        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec"); psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "rotor.dll"));
        foreach (string a in new[] { "serve", "--model", model, "--port", "0", "--no-embeddings" }) psi.ArgumentList.Add(a);
        psi.Environment["ROTOR_THREADS"] = "1";
        using var p = Process.Start(psi)!;
        try
        {
            Uri? address = null;
            var sw = Stopwatch.StartNew();
            while (address is null && sw.Elapsed < TimeSpan.FromMinutes(1) && await p.StandardError.ReadLineAsync() is { } line)
                if (Serving().Match(line) is { Success: true } m) address = new Uri(m.Groups[1].Value);
            Assert.NotNull(address);
            using var http = new HttpClient { BaseAddress = address };
            using var r = await http.PostAsync("v1/chat/completions", new StringContent("""{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8}""", Encoding.UTF8, "application/json"));
            var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(8, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "rotor serve did not stop on SIGTERM");
            Assert.Equal(0, p.ExitCode);
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
    }

    [GeneratedRegex(@"^serving \S+ at (http://\S+?) ")]
    private static partial Regex Serving();
}
