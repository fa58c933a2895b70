using System.Text.Json;
using Rotor.IO;

namespace Rotor.Cli.Tests;

/// <summary>The language-model commands as a user runs them: generation from text and from ids, logits as JSON, a
/// model converted to GGUF, and bad input (each one line naming the file or value, exit code 2, no stack trace).</summary>
public sealed class LmCommandTests
{
    private static (int Code, string Out) Rotor(params string[] args) => TrainEvalEndToEndTests.Rotor(args);
    private static string Repo(params string[] parts) => Path.Combine([TrainEvalEndToEndTests.Repo(), .. parts]);
    private static readonly string Stories = Repo("src", "Rotor.Cli", "Resources", "lm", "stories260K.bin");
    private static readonly string Tok512 = Repo("src", "Rotor.Cli", "Resources", "lm", "tok512.bin");
    private static string Fixture(string name) => Repo("tests", "Rotor.Lm.Tests", "Data", "gguf", name);

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-cli-lm-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static void AssertOneLineError((int Code, string Out) r, params string[] contains)
    {
        Assert.True(r.Code == 2, $"exit {r.Code}: {r.Out}");
        string line = r.Out.Split('\n').Single(l => l.StartsWith("rotor: ", StringComparison.Ordinal));
        foreach (string c in contains) Assert.Contains(c, line);
        Assert.DoesNotContain("   at ", r.Out);
    }

    [Fact]
    public void BenchLmRunsABatchedGenerationTestOnTheCpu()
    {
        string dir = TempDir();
        try
        {
            string json = Path.Combine(dir, "bench.json");
            var r = Rotor("bench-lm", Stories, "-p", "0", "-n", "4", "-r", "1", "-t", "1", "--batch", "1,3", "--json", json);
            Assert.True(r.Code == 0, r.Out);
            Assert.Contains("batch   3", r.Out);
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            var batches = doc.RootElement.EnumerateArray().Where(e => e.TryGetProperty("batch", out _))
                .Select(e => (Batch: e.GetProperty("batch").GetInt32(), Tps: e.GetProperty("tokens_per_second").GetDouble())).ToArray();
            Assert.Equal([1, 3], batches.Select(b => b.Batch));
            Assert.All(batches, b => Assert.True(b.Tps > 0, $"batch {b.Batch}: {b.Tps} tokens/s"));
            AssertOneLineError(Rotor("bench-lm", Stories, "-p", "4", "-n", "0", "--batch", "2"), "--batch", "--gen");
            AssertOneLineError(Rotor("bench-lm", Stories, "-n", "4", "--batch", "0"), "--batch", "1..64");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void GenerateStreamsTheTextLlama2cPrints()
    {
        // The tokenizer beside the checkpoint is found by llama2.c's naming (tok512.bin).
        var r = Rotor("generate", Stories, "Once upon a time", "-n", "30", "--temp", "0");
        Assert.True(r.Code == 0, r.Out);
        Assert.Contains("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", r.Out);
        Assert.Contains("tokens/s", r.Out);
    }

    [Fact]
    public async Task ChatKeepsTheEarlierTurnsForTheNextOne()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "rotor.dll");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet")
        { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { "exec", dll, "chat", Stories, "-n", "8", "--temp", "0" }) psi.ArgumentList.Add(a);
        psi.Environment["ROTOR_THREADS"] = "1";
        using var p = System.Diagnostics.Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write("Once upon a time\nThe dog ran\n/exit\n");
        p.StandardInput.Close();
        using (var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2))) await p.WaitForExitAsync(cts.Token);
        string err = await stderr;
        Assert.True(p.ExitCode == 0, await stdout + err);
        var turns = err.Split('\n').Where(l => l.Contains("kept from the earlier turns", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, turns.Count);
        Assert.Contains(", 0 of them kept", turns[0]);
        // The second turn's prompt begins with the first turn's (5 tokens), kept; the reply follows as the plain
        // format renders it, which need not be the ids generated.
        var m = System.Text.RegularExpressions.Regex.Match(turns[1], @"prompt (\d+) tokens, (\d+) of them kept");
        Assert.True(m.Success, turns[1]);
        Assert.InRange(int.Parse(m.Groups[2].Value), 5, int.Parse(m.Groups[1].Value) - 1);
    }

    [Fact]
    public void GenerateFromIdsWritesJsonAndLogitsMatchIt()
    {
        string dir = TempDir();
        try
        {
            string json = Path.Combine(dir, "gen.json"), logits = Path.Combine(dir, "logits.json");
            var g = Rotor("generate", Stories, "--ids", "1,403,407,261,378", "-n", "5", "--temp", "0", "--json", json, "--logprobs", "2");
            Assert.True(g.Code == 0, g.Out);
            Assert.Contains("mean log-probability -", g.Out);
            using var gd = JsonDocument.Parse(File.ReadAllText(json));
            Assert.Equal([432, 383, 286, 261, 376], gd.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
            var l = Rotor("logits", Stories, "--ids", "1,403,407,261,378", "--json", logits);
            Assert.True(l.Code == 0, l.Out);
            using var ld = JsonDocument.Parse(File.ReadAllText(logits));
            var last = ld.RootElement.GetProperty("logits")[4].EnumerateArray().Select(e => e.GetSingle()).ToArray();
            Assert.Equal(512, last.Length);
            Assert.Equal(432, Array.IndexOf(last, last.Max()));
            // The first token's log-probability is the log-softmax of rotor logits' last row at it.
            double lse = last.Max() + Math.Log(last.Sum(x => Math.Exp(x - last.Max())));
            var first = gd.RootElement.GetProperty("logprobs")[0];
            Assert.Equal(432, first.GetProperty("id").GetInt32());
            Assert.Equal(last[432] - lse, first.GetProperty("logprob").GetDouble(), 1e-4);
            Assert.Equal(2, first.GetProperty("top").GetArrayLength());
            Assert.Equal(432, first.GetProperty("top")[0].GetProperty("id").GetInt32());
            Assert.Equal(5, gd.RootElement.GetProperty("logprobs").GetArrayLength());
            Assert.Contains("--logprobs", Rotor("generate", Stories, "--ids", "1", "--logprobs", "21").Out);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ConvertedI2SFileGivesBitnetCppFilesLogits()
    {
        string dir = TempDir();
        try
        {
            string outFile = Path.Combine(dir, "tiny-i2_s.gguf");
            var c = Rotor("convert", Fixture("bitnet-tiny-f32.gguf"), "--type", "i2_s", "-o", outFile);
            Assert.True(c.Code == 0, c.Out);
            string a = Path.Combine(dir, "a.json"), b = Path.Combine(dir, "b.json");
            Assert.Equal(0, Rotor("logits", outFile, "--ids", "1,2,3,300", "--json", a).Code);
            Assert.Equal(0, Rotor("logits", Fixture("bitnet-tiny-i2_s.gguf"), "--ids", "1,2,3,300", "--json", b).Code);
            using var da = JsonDocument.Parse(File.ReadAllText(a));
            using var db = JsonDocument.Parse(File.ReadAllText(b));
            Assert.Equal(da.RootElement.GetProperty("logits").ToString(), db.RootElement.GetProperty("logits").ToString());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadModelFilesAreOneClearLine()
    {
        string dir = TempDir();
        try
        {
            byte[] good = File.ReadAllBytes(Fixture("bitnet-tiny-tq2_0.gguf"));
            string cut = Path.Combine(dir, "cut.gguf");
            File.WriteAllBytes(cut, good.AsSpan(0, good.Length / 2).ToArray());
            AssertOneLineError(Rotor("info", cut), "cut.gguf");

            // An unknown tensor type id in the first tensor info (after the name: ndims, dims, then the type).
            string odd = Path.Combine(dir, "odd.gguf");
            byte[] b = (byte[])good.Clone();
            int at = FirstTensorTypeOffset(b);
            BitConverter.GetBytes(99u).CopyTo(b, at);
            File.WriteAllBytes(odd, b);
            AssertOneLineError(Rotor("info", odd), "odd.gguf", "99");

            AssertOneLineError(Rotor("generate", Path.Combine(dir, "absent.gguf"), "hi"), "absent.gguf");
            // A GGUF without a tokenizer asked for text.
            AssertOneLineError(Rotor("generate", Fixture("bitnet-tiny-tq2_0.gguf"), "hello"), "no tokenizer", "--tokenizer");
            // A prompt longer than the context.
            AssertOneLineError(Rotor("generate", Stories, "--ids", "1,2,3,4,5,6", "--ctx", "4"), "context");
            AssertOneLineError(Rotor("generate", Stories, "--ids", "1,x"), "--ids", "x");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void HuggingFaceFoldersWithBadFilesAreOneClearLine()
    {
        string dir = TempDir();
        try
        {
            // A tiny Llama folder (float weights) that loads, then the same with a shape that disagrees with config.json,
            // a truncated safetensors file and a missing tensor.
            string ok = Path.Combine(dir, "ok");
            WriteTinyLlama(ok, dim: 16);
            var r = Rotor("logits", ok, "--ids", "1,2,3", "--json", Path.Combine(dir, "l.json"));
            Assert.True(r.Code == 0, r.Out);

            string wrong = Path.Combine(dir, "wrong");
            WriteTinyLlama(wrong, dim: 16, ffnTensorRows: 24);
            AssertOneLineError(Rotor("info", wrong), "model.layers.0.mlp.gate_proj.weight", "[24, 16]", "[32, 16]");

            string cut = Path.Combine(dir, "cut");
            WriteTinyLlama(cut, dim: 16);
            string st = Path.Combine(cut, "model.safetensors");
            byte[] bytes = File.ReadAllBytes(st);
            File.WriteAllBytes(st, bytes.AsSpan(0, bytes.Length - 100).ToArray());
            AssertOneLineError(Rotor("info", cut), "model.safetensors");

            string missing = Path.Combine(dir, "missing");
            WriteTinyLlama(missing, dim: 16, skip: "model.norm.weight");
            AssertOneLineError(Rotor("info", missing), "model.norm.weight", "missing");
        }
        finally { Directory.Delete(dir, true); }
    }

    private static void WriteTinyLlama(string folder, int dim, int ffnTensorRows = 32, string? skip = null)
    {
        Directory.CreateDirectory(folder);
        const int layers = 1, heads = 2, kv = 1, ffn = 32, vocab = 40;
        File.WriteAllText(Path.Combine(folder, "config.json"), $$"""
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": {{dim}}, "intermediate_size": {{ffn}},
             "num_hidden_layers": {{layers}}, "num_attention_heads": {{heads}}, "num_key_value_heads": {{kv}}, "vocab_size": {{vocab}},
             "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": true}
            """);
        var rng = new Random(1);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        int hd = dim / heads;
        var t = new List<SafeTensor>
        {
            SafeTensor.FromFloats("model.embed_tokens.weight", R(vocab * dim), vocab, dim),
            SafeTensor.FromFloats("model.norm.weight", R(dim), dim),
            SafeTensor.FromFloats("model.layers.0.input_layernorm.weight", R(dim), dim),
            SafeTensor.FromFloats("model.layers.0.post_attention_layernorm.weight", R(dim), dim),
            SafeTensor.FromFloats("model.layers.0.self_attn.q_proj.weight", R(dim * dim), dim, dim),
            SafeTensor.FromFloats("model.layers.0.self_attn.k_proj.weight", R(kv * hd * dim), kv * hd, dim),
            SafeTensor.FromFloats("model.layers.0.self_attn.v_proj.weight", R(kv * hd * dim), kv * hd, dim),
            SafeTensor.FromFloats("model.layers.0.self_attn.o_proj.weight", R(dim * dim), dim, dim),
            SafeTensor.FromFloats("model.layers.0.mlp.gate_proj.weight", R(ffnTensorRows * dim), ffnTensorRows, dim),
            SafeTensor.FromFloats("model.layers.0.mlp.up_proj.weight", R(ffn * dim), ffn, dim),
            SafeTensor.FromFloats("model.layers.0.mlp.down_proj.weight", R(dim * ffn), dim, ffn),
        };
        SafeTensors.Write(Path.Combine(folder, "model.safetensors"), t.Where(x => x.Name != skip));
    }

    /// <summary>Byte offset of the first tensor info's type field in a GGUF file.</summary>
    private static int FirstTensorTypeOffset(byte[] b)
    {
        int p = 8;
        long tensors = BitConverter.ToInt64(b, p); p += 8;
        long kvs = BitConverter.ToInt64(b, p); p += 8;
        for (long i = 0; i < kvs; i++) { p += 8 + (int)BitConverter.ToInt64(b, p); p = SkipValue(b, p, BitConverter.ToInt32(b, p) is var t ? t : 0, typeAt: true); }
        Assert.True(tensors > 0);
        p += 8 + (int)BitConverter.ToInt64(b, p);         // name
        int nd = BitConverter.ToInt32(b, p); p += 4 + 8 * nd;
        return p;
    }

    private static int SkipValue(byte[] b, int p, int type, bool typeAt)
    {
        if (typeAt) p += 4;
        int[] sizes = [1, 1, 2, 2, 4, 4, 4, 1, -1, -2, 8, 8, 8];
        switch (type)
        {
            case 8: return p + 8 + (int)BitConverter.ToInt64(b, p);
            case 9:
                {
                    int et = BitConverter.ToInt32(b, p); p += 4;
                    long n = BitConverter.ToInt64(b, p); p += 8;
                    for (long i = 0; i < n; i++) p = SkipValue(b, p, et, typeAt: false);
                    return p;
                }
            default: return p + sizes[type];
        }
    }
}
