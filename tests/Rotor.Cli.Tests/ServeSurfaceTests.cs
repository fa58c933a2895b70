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
        (code, output) = TrainEvalEndToEndTests.Rotor("serve", "--model", "/nonexistent/model.gguf", "--adaptive", "maybe");
        Assert.Equal(2, code);
        Assert.Contains("maybe", output);
        (code, output) = TrainEvalEndToEndTests.Rotor("serve", "--model", "/nonexistent/model.gguf", "--confidence-threshold", "2");
        Assert.Equal(2, code);
        Assert.Contains("--confidence-threshold is 2, must be in 0..1", output);
    }

    [StoriesFact]
    public async Task ServesGroundedChatWithTheModelRuleAndAnInt8Head()
    {
        var (p, address) = await StartAsync("serve", "--model", Stories()!, "--port", "0", "--index", "demo", "--retrieval-rule", "model", "--confidence-tokens", "4", "--lm-head", "int8");
        using (p)
        {
            try
            {
                using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(2) };
                using var r = await http.PostAsync("v1/chat/completions", new StringContent("""{"model":"stories260K-rag","messages":[{"role":"user","content":"Who was the first person to walk on the Moon?"}],"max_tokens":8}""", Encoding.UTF8, "application/json"));
                var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
                var decision = body.GetProperty("retrieval");
                Assert.Equal("model", decision.GetProperty("mode").GetString());
                Assert.InRange(decision.GetProperty("confidence").GetProperty("steps").GetInt32(), 1, 4);
                Assert.Equal(decision.GetProperty("reason").GetString(), body.GetProperty("retrieval_decision").GetString());
                await StopAsync(p);
            }
            finally
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>Starts <c>rotor ARGS</c> and waits for its "serving ... at URL" line.</summary>
    private static async Task<(Process Process, Uri Address)> StartAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec"); psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "rotor.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["ROTOR_THREADS"] = "1";
        var p = Process.Start(psi)!;
        Uri? address = null;
        var sw = Stopwatch.StartNew();
        var seen = new StringBuilder();
        while (address is null && sw.Elapsed < TimeSpan.FromMinutes(2) && await p.StandardError.ReadLineAsync() is { } line)
        {
            seen.AppendLine(line);
            if (Serving().Match(line) is { Success: true } m) address = new Uri(m.Groups[1].Value);
        }
        if (address is null) { p.Kill(entireProcessTree: true); Assert.Fail("rotor serve did not start: " + seen); }
        return (p, address!);
    }

    /// <summary>SIGTERM, then the process must exit 0 within 30 s.</summary>
    private static async Task StopAsync(Process p)
    {
        using (var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "rotor serve did not stop on SIGTERM");
        Assert.Equal(0, p.ExitCode);
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
