using System.Buffers.Binary;
using Xunit;

namespace Rotor.Index.Tests;

public class PersistenceTests
{
    private static VectorIndex Build(CodeKind kind, IndexStructure structure, int n = 700, int d = 40)
    {
        var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = kind, Structure = structure, Metric = Metric.Cosine });
        index.Add(TestData.Records(n, d, 6));
        index.Delete("k5"); index.Delete("k6");
        return index;
    }

    public static TheoryData<CodeKind, IndexStructure, bool> Cases()
    {
        var t = new TheoryData<CodeKind, IndexStructure, bool>();
        foreach (var k in Enum.GetValues<CodeKind>()) foreach (var s in Enum.GetValues<IndexStructure>()) t.Add(k, s, k == CodeKind.Ternary);
        t.Add(CodeKind.Ternary, IndexStructure.Flat, false);
        return t;
    }

    [Fact]
    public void OneThreadBuildsTheSameGraphWhateverTheBatchesAndReopens()
    {
        // GraphBuildThreads = 1: the same records in the same order give the same file, in one batch or in three with
        // a save and reopen between (levels by slot, not by a generator restarted on open).
        string dir = TestData.TempDir();
        var records = TestData.Records(3000, 32, 11);
        var options = new VectorIndexOptions { Dimensions = 32, Code = CodeKind.Ternary, Structure = IndexStructure.Hnsw, Metric = Metric.Cosine };
        using (var whole = VectorIndex.Create(options))
        {
            whole.GraphBuildThreads = 1;
            whole.Add(records);
            whole.Save(Path.Combine(dir, "whole.rix"));
        }
        string parts = Path.Combine(dir, "parts.rix");
        foreach (var (from, count) in new[] { (0, 1000), (1000, 1500), (2500, 500) })
        {
            using var index = from == 0 ? VectorIndex.Create(options) : VectorIndex.Open(parts);
            index.GraphBuildThreads = 1;
            index.Add(records.Skip(from).Take(count));
            index.Save(parts);
        }
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "whole.rix")), File.ReadAllBytes(parts));
        using var probe = VectorIndex.Create(options);
        Assert.Throws<ArgumentOutOfRangeException>(() => probe.GraphBuildThreads = -1);
    }

    [Theory, MemberData(nameof(Cases))]
    public void RoundTripGivesTheSameResults(CodeKind kind, IndexStructure structure, bool map)
    {
        string path = Path.Combine(TestData.TempDir(), "a.rix");
        using var index = Build(kind, structure);
        index.Save(path);
        using var loaded = VectorIndex.Open(path, memoryMap: map);
        Assert.Equal(index.Options, loaded.Options);
        Assert.Equal(index.Count, loaded.Count);
        Assert.Equal(map, loaded.Stats.MemoryMapped);
        Assert.Null(loaded.Get("k5"));
        Assert.Equal(index.Get("k9")!.Vector.ToArray(), loaded.Get("k9")!.Vector.ToArray());
        Assert.Equal(index.Get("k9")!.Fields, loaded.Get("k9")!.Fields);
        for (int qi = 0; qi < 5; qi++)
        {
            float[] q = TestData.Query(40, qi);
            var a = index.Search(q, 15, new SearchOptions { RescoreFactor = kind == CodeKind.Float32 ? 0 : 3 });
            var b = loaded.Search(q, 15, new SearchOptions { RescoreFactor = kind == CodeKind.Float32 ? 0 : 3 });
            Assert.Equal(a.Select(h => (h.Key, h.Score)), b.Select(h => (h.Key, h.Score)));
        }
        // A loaded (mapped) index accepts writes: the mapping is copied on first write.
        loaded.Add([new IndexRecord("new", TestData.Query(40, 99))]);
        Assert.Equal("new", loaded.Search(TestData.Query(40, 99), 1)[0].Key);
        loaded.Save(path); // over the file it maps
        using var again = VectorIndex.Open(path);
        Assert.Equal(index.Count + 1, again.Count);
    }

    [Fact]
    public void InterruptedSaveKeepsTheOldFile()
    {
        string dir = TestData.TempDir(), path = Path.Combine(dir, "a.rix");
        using var index = Build(CodeKind.Ternary, IndexStructure.Hnsw);
        index.Save(path);
        byte[] before = File.ReadAllBytes(path);
        index.Add([new IndexRecord("later", TestData.Query(40, 1))]);
        IndexFile.BeforeRename = tmp =>
        {
            Assert.True(File.Exists(tmp));
            throw new IOException("injected fault between write and rename");
        };
        try { Assert.Throws<IOException>(() => index.Save(path)); }
        finally { IndexFile.BeforeRename = null; }
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(dir)); // the temporary file was removed
        using var old = VectorIndex.Open(path);
        Assert.Equal(index.Count - 1, old.Count);
        Assert.Null(old.Get("later"));
    }

    [Fact]
    public void AKilledSaveLeavesATempFileThatIsIgnored()
    {
        // What a process killed mid-write leaves behind: a partial temporary file beside the intact old file.
        string dir = TestData.TempDir(), path = Path.Combine(dir, "a.rix");
        using var index = Build(CodeKind.Int8, IndexStructure.Flat);
        index.Save(path);
        byte[] full = File.ReadAllBytes(path);
        File.WriteAllBytes(Path.Combine(dir, ".a.rix.123.tmp"), full.AsSpan(0, full.Length / 2).ToArray());
        using var old = VectorIndex.Open(path);
        Assert.Equal(index.Count, old.Count);
        var e = Assert.Throws<RotorException>(() => VectorIndex.Open(Path.Combine(dir, ".a.rix.123.tmp")));
        Assert.Contains("truncated", e.Message);
    }

    /// <summary>Rewrites a version 2 ternary file as version 1 ([+1 plane][-1 plane] codes), checksums included.</summary>
    private static byte[] AsVersion1(byte[] v2, int words)
    {
        var b = (byte[])v2.Clone();
        var hs = b.AsSpan(0, IndexFile.HeaderBytes);
        int sections = (int)BinaryPrimitives.ReadUInt32LittleEndian(hs[68..]);
        for (int i = 0; i < sections; i++)
        {
            var e = hs.Slice(IndexFile.SectionTableOffset + i * IndexFile.SectionEntryBytes, IndexFile.SectionEntryBytes);
            if (BinaryPrimitives.ReadUInt32LittleEndian(e) != (uint)IndexFile.Section.Codes) continue;
            int off = (int)BinaryPrimitives.ReadUInt64LittleEndian(e[8..]), len = (int)BinaryPrimitives.ReadUInt64LittleEndian(e[16..]);
            var w = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(b.AsSpan(off, len));
            for (int c = 0; c < w.Length; c += 2 * words)
                for (int j = 0; j < words; j++) w[c + j] &= ~w[c + words + j]; // +1 plane = mask and not sign; -1 plane = sign
            BinaryPrimitives.WriteUInt64LittleEndian(e[24..], System.IO.Hashing.XxHash3.HashToUInt64(b.AsSpan(off, len)));
        }
        BinaryPrimitives.WriteUInt32LittleEndian(hs[8..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(hs[IndexFile.HeaderChecksumOffset..], System.IO.Hashing.XxHash3.HashToUInt64(hs[..IndexFile.HeaderChecksumOffset]));
        return b;
    }

    [Theory]
    [InlineData(IndexStructure.Flat, true)]
    [InlineData(IndexStructure.Hnsw, false)]
    public void Version1TernaryFilesAreConvertedOnLoad(IndexStructure structure, bool map)
    {
        string dir = TestData.TempDir(), path = Path.Combine(dir, "v2.rix"), old = Path.Combine(dir, "v1.rix");
        using var index = Build(CodeKind.Ternary, structure);
        index.Save(path);
        File.WriteAllBytes(old, AsVersion1(File.ReadAllBytes(path), index.Layout.Words));
        Assert.NotEqual(File.ReadAllBytes(path), File.ReadAllBytes(old));
        using var loaded = VectorIndex.Open(old, memoryMap: map);
        Assert.False(loaded.Stats.MemoryMapped); // converted codes live in owned memory ...
        if (map) Assert.True(loaded.Store.Full!.IsMapped); // ... the kept float32 vectors stay mapped
        Assert.Equal(index.Count, loaded.Count);
        for (int qi = 0; qi < 5; qi++)
        {
            float[] q = TestData.Query(40, qi);
            var a = index.Search(q, 15);
            var b = loaded.Search(q, 15);
            Assert.Equal(a.Select(h => (h.Key, h.Score)), b.Select(h => (h.Key, h.Score)));
        }
        // Saving writes the current version, byte for byte what the original index writes.
        string again = Path.Combine(dir, "again.rix");
        loaded.Save(again);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Fact]
    public void TruncatedAndCorruptFilesAreRejected()
    {
        string dir = TestData.TempDir(), path = Path.Combine(dir, "a.rix");
        using (var index = Build(CodeKind.Ternary, IndexStructure.Hnsw)) index.Save(path);
        byte[] good = File.ReadAllBytes(path);

        void Expect(byte[] bytes, string words)
        {
            string p = Path.Combine(dir, "bad.rix");
            File.WriteAllBytes(p, bytes);
            var e = Assert.Throws<RotorException>(() => VectorIndex.Open(p));
            Assert.Contains(words, e.Message);
            Assert.Contains("bad.rix", e.Message);
        }

        Expect(good[..100], "truncated");
        Expect(good[..(good.Length - 5000)], "truncated");
        var magic = (byte[])good.Clone(); magic[0] = (byte)'X';
        Expect(magic, "not a Rotor index");
        var version = (byte[])good.Clone(); BinaryPrimitives.WriteUInt32LittleEndian(version.AsSpan(8), 99);
        Expect(version, "version 99");
        BinaryPrimitives.WriteUInt32LittleEndian(version.AsSpan(8), 0);
        Expect(version, "version 0");
        var header = (byte[])good.Clone(); header[20] ^= 1;
        Expect(header, "header checksum");
        var body = (byte[])good.Clone(); body[IndexFile.HeaderBytes + 10] ^= 0x40;
        Expect(body, "checksum mismatch in section Codes");
        var tail = (byte[])good.Clone(); tail[^10] ^= 0x01;
        Expect(tail, "checksum mismatch");
        Assert.Contains("does not exist", Assert.Throws<RotorException>(() => VectorIndex.Open(Path.Combine(dir, "none.rix"))).Message);
    }

    // Two writers of one file through the library: the second save would drop the first one's records, so it is refused.
    [Fact]
    public void ASaveOverAFileReplacedSinceItWasLoadedIsRefused()
    {
        string path = Path.Combine(TestData.TempDir(), "shared.rix");
        using (var index = Build(CodeKind.Ternary, IndexStructure.Flat, n: 50)) index.Save(path);
        using var a = VectorIndex.Open(path, memoryMap: false);
        using var b = VectorIndex.Open(path, memoryMap: false);
        a.Add([new IndexRecord("from-a", TestData.Query(40, 1))]);
        a.Save(path);
        b.Add([new IndexRecord("from-b", TestData.Query(40, 2))]);
        Assert.Contains("replaced by another writer", Assert.Throws<RotorException>(() => b.Save(path)).Message);
        a.Add([new IndexRecord("again-a", TestData.Query(40, 3))]);
        a.Save(path); // its own earlier save is no obstacle
        using var c = VectorIndex.Open(path);
        Assert.NotNull(c.Get("from-a"));
        Assert.NotNull(c.Get("again-a"));
        Assert.Null(c.Get("from-b"));
        b.Save(Path.Combine(TestData.TempDir(), "elsewhere.rix")); // another path is fine
    }
}
