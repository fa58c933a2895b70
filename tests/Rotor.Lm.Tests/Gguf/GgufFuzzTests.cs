using Rotor.Lm.Gguf;

namespace Rotor.Lm.Tests.Gguf;

/// <summary>Damaged GGUF files (the reference projects' own fixtures, 300 mutations each, fixed seeds): opening and
/// loading the model either succeeds or fails with a <see cref="RotorException"/>; never another exception type, a
/// hang or a crash.</summary>
public sealed class GgufFuzzTests
{
    [Theory]
    [InlineData("bitnet-tiny-tq2_0.gguf", 11)]
    [InlineData("bitnet-tiny-i2_s.gguf", 12)]
    [InlineData("bitnet-tiny-tq1_0.gguf", 13)]
    public void DamagedFilesFailCleanly(string fixture, int seed)
    {
        byte[] good = File.ReadAllBytes(TestPaths.Data("gguf", fixture));
        string dir = TestPaths.TempDir();
        try
        {
            var rng = new Random(seed);
            int refused = 0;
            for (int c = 0; c < 300; c++)
            {
                string path = Path.Combine(dir, $"case{c}.gguf");
                File.WriteAllBytes(path, Rotor.Testing.FileMutator.Mutate(good, rng));
                try
                {
                    using var m = LanguageModel.Load(path, new LanguageModelOptions { Threads = 1 });
                    m.CreateSession(8).Append([1, 2]);
                }
                catch (RotorException) { refused++; }
                catch (Exception e) { Assert.Fail($"{fixture} case {c} (seed {seed}): {e.GetType().Name}: {e.Message}"); }
            }
            Assert.True(refused > 0, "no damaged file was refused: the mutations did not reach the data");
        }
        finally { Directory.Delete(dir, true); }
    }
}
