using Xunit;

namespace Rotor.Index.Tests;

/// <summary>
/// Damaged files of every format this assembly reads (index files with and without checksums, .npy, JSONL vectors):
/// bytes flipped, overwritten, cut or inserted at random offsets, a fixed seed a format. Each load either succeeds and
/// gives a usable index, or fails with a <see cref="RotorException"/>; never another exception type, a hang or a crash.
/// Files opened with verification are held to more: the answers of the good file, or a <see cref="RotorException"/>.
/// </summary>
public class FuzzTests
{
    // Cases a format: a few seconds on two cores. The seed makes a failure reproducible (the case number is printed).
    private const int Cases = 300;

    internal static byte[] Mutate(byte[] good, Random rng)
    {
        var b = new List<byte>(good);
        int edits = 1 + rng.Next(4);
        for (int e = 0; e < edits && b.Count > 0; e++)
        {
            int at = rng.Next(b.Count);
            switch (rng.Next(5))
            {
                case 0: b[at] ^= (byte)(1 << rng.Next(8)); break;                               // flip a bit
                case 1: for (int i = at; i < Math.Min(b.Count, at + 1 + rng.Next(16)); i++) b[i] = (byte)rng.Next(256); break; // overwrite a run
                case 2: b.RemoveRange(at, b.Count - at); break;                                 // truncate
                case 3: b.InsertRange(at, Enumerable.Range(0, 1 + rng.Next(8)).Select(_ => (byte)rng.Next(256))); break; // insert
                default: b.RemoveRange(at, Math.Min(b.Count - at, 1 + rng.Next(32))); break;     // cut a run
            }
        }
        return b.ToArray();
    }

    private static void Fuzz(string name, byte[] good, int seed, Action<string> load)
    {
        string dir = TestData.TempDir();
        var rng = new Random(seed);
        for (int c = 0; c < Cases; c++)
        {
            string path = Path.Combine(dir, $"{c}{Path.GetExtension(name)}");
            File.WriteAllBytes(path, Mutate(good, rng));
            try { load(path); }
            catch (RotorException) { }
            catch (Exception e)
            {
                Assert.Fail($"{name}, seed {seed}, case {c}: {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
            }
            finally { File.Delete(path); }
        }
    }

    [Theory]
    [InlineData(CodeKind.Ternary, IndexStructure.Flat, true)]
    [InlineData(CodeKind.Int8, IndexStructure.Hnsw, true)]
    [InlineData(CodeKind.Binary, IndexStructure.Flat, false)]
    [InlineData(CodeKind.Float32, IndexStructure.Hnsw, false)]
    public void DamagedIndexFilesLoadOrFailWithARotorError(CodeKind code, IndexStructure structure, bool verify)
    {
        string path = Path.Combine(TestData.TempDir(), "good.rix");
        using (var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 24, Code = code, Structure = structure }))
        {
            index.Add(TestData.Records(120, 24, 5));
            index.Delete("k3");
            index.Save(path);
        }
        float[] q = TestData.Query(24, 1);
        Fuzz("index.rix", File.ReadAllBytes(path), 1000 + (int)code * 10 + (int)structure, p =>
        {
            using var loaded = VectorIndex.Open(p, memoryMap: false, verifyChecksums: verify);
            loaded.Search(q, 5);
            _ = loaded.Stats;
        });
    }

    /// <summary>Mapped and verified lazily, a damaged file either fails with a <see cref="RotorException"/> (at open or at
    /// the first read of a damaged chunk) or answers exactly as the undamaged file does (the damage hit bytes that no
    /// checksum covers and no reader uses: padding, the header's reserved tail): never a silent wrong result.</summary>
    [Theory]
    [InlineData(CodeKind.Ternary, IndexStructure.Flat)]
    [InlineData(CodeKind.Int8, IndexStructure.Hnsw)]
    public void DamagedMappedIndexFilesFailOrAnswerAsTheGoodFile(CodeKind code, IndexStructure structure)
    {
        string path = Path.Combine(TestData.TempDir(), "good.rix");
        using (var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = 24, Code = code, Structure = structure, KeepFullPrecision = true }))
        {
            index.Add(TestData.Records(120, 24, 5));
            index.Delete("k3");
            index.Save(path);
        }
        float[] q = TestData.Query(24, 1);
        string Answers(VectorIndex index)
        {
            var all = index.Query(null, int.MaxValue);
            return string.Join(';', index.Search(q, 5, new SearchOptions { RescoreFactor = 3 }).Select(h => $"{h.Key} {h.Score:R}"))
                 + "|" + string.Join(';', all.Select(r => $"{r.Key} {string.Join(',', r.Vector.ToArray())} {string.Join(',', r.Fields?.Select(f => $"{f.Key}={f.Value}") ?? [])}"));
        }
        string expected;
        using (var good = VectorIndex.Open(path, memoryMap: false)) expected = Answers(good);
        Fuzz("index.rix", File.ReadAllBytes(path), 2000 + (int)code * 10 + (int)structure, p =>
        {
            using var loaded = VectorIndex.Open(p, memoryMap: true);
            Assert.Equal(expected, Answers(loaded));
        });
    }

    [Fact]
    public void DamagedVectorFilesReadOrFailWithARotorError()
    {
        string dir = TestData.TempDir();
        string npy = Path.Combine(dir, "v.npy"), jsonl = Path.Combine(dir, "v.jsonl");
        var records = TestData.Records(40, 8, 2);
        VectorFiles.WriteNpy(npy, records.SelectMany(r => r.Vector.ToArray()).ToArray(), records.Count, 8);
        File.WriteAllLines(jsonl, records.Select(r => $"{{\"key\":\"{r.Key}\",\"vector\":[{string.Join(',', r.Vector.ToArray().Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))}],\"data\":{{\"n\":1}}}}"));
        foreach (string f in new[] { npy, jsonl })
            Fuzz(Path.GetFileName(f), File.ReadAllBytes(f), 77, p =>
            {
                foreach (var batch in VectorFiles.Read(p, 16)) _ = batch.Count;
            });
    }
}
