using System.Buffers.Binary;
using System.IO.Hashing;
using Xunit;

namespace Rotor.Index.Tests;

/// <summary>
/// Lazy verification of mapped index files (docs/INDEX_FORMAT.md, "Chunk checksums"): opening checks the header and the
/// small sections only; codes and full vectors are checked a 4 KiB page at a time when first read; damage in a section that
/// open does not read is found by <see cref="VectorIndex.VerifyFile"/> and by the first call that reads it.
/// </summary>
public class LazyVerifyTests
{
    // 256 dimensions: a ternary code is 64 bytes (64 a 4 KiB chunk), a kept vector 1 KiB (4 a chunk); 3000 slots make
    // 47 chunks of codes and 750 of vectors.
    private const int D = 256, N = 3000;

    private static string Build(IndexStructure structure, string name = "a.rix")
    {
        string path = Path.Combine(TestData.TempDir(), name);
        using var index = VectorIndex.Create(new VectorIndexOptions
        {
            Dimensions = D, Code = CodeKind.Ternary, Structure = structure, KeepFullPrecision = true,
            Hnsw = new HnswSettings(8, 40, 40, 1),
        });
        index.Add(TestData.Records(N, D, 3));
        index.Save(path);
        return path;
    }

    /// <summary>The file offset of byte <paramref name="at"/> of a section.</summary>
    private static long OffsetOf(string path, IndexFile.Section id, long at) => IndexFile.ReadHeader(path).Sections[id].Offset + at;

    private static void Flip(string path, long offset)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        fs.Position = offset;
        int b = fs.ReadByte();
        fs.Position = offset;
        fs.WriteByte((byte)(b ^ 0x10));
    }

    [Fact]
    public void OpeningReadsNoCodeOrVectorAndAQueryChecksOnlyWhatItTouches()
    {
        string path = Build(IndexStructure.Hnsw);
        using var index = VectorIndex.Open(path, memoryMap: true);
        var (done, total) = index.MappedChecked;
        Assert.Equal(0, done);
        Assert.Equal((long)N * 64 + (long)N * D * 4, total);

        // A record's vector: the one 4 KiB chunk of full vectors that holds it (slot 100 at byte 102400: chunk 25).
        Assert.NotNull(index.Get("k100"));
        Assert.Equal(IndexFile.ChunkBytes, index.MappedChecked.Checked);

        // A graph search with rescoring reads some codes (47 chunks of them at most) and 10 vectors: at most 10 more
        // chunks of vectors, of 750.
        var hits = index.Search(TestData.Query(D, 9), 5, new SearchOptions { RescoreFactor = 2 });
        Assert.Equal(5, hits.Count);
        Assert.InRange(index.MappedChecked.Checked, IndexFile.ChunkBytes + 1, (1 + 10) * IndexFile.ChunkBytes + (long)N * 64);

        // An exact scan reads every code: the codes section is then checked in full, the vectors still not.
        index.Search(TestData.Query(D, 10), 5, new SearchOptions { Exact = true });
        Assert.True(index.MappedChecked.Checked >= (long)N * 64);
        Assert.True(index.MappedChecked.Checked < total);
    }

    [Fact]
    public void TheSameResultsAsAnIndexCheckedWhenOpened()
    {
        string path = Build(IndexStructure.Hnsw);
        using var copied = VectorIndex.Open(path, memoryMap: false);
        using var mapped = VectorIndex.Open(path, memoryMap: true);
        for (int seed = 0; seed < 5; seed++)
        {
            var q = TestData.Query(D, 20 + seed);
            foreach (var o in new[] { new SearchOptions(), new SearchOptions { Exact = true }, new SearchOptions { RescoreFactor = 4 } })
                Assert.Equal(copied.Search(q, 7, o).Select(h => (h.Key, h.Score)), mapped.Search(q, 7, o).Select(h => (h.Key, h.Score)));
        }
    }

    [Fact]
    public void DamagedVectorsAreFoundByVerifyAndByTheFirstReadOfThem()
    {
        string path = Build(IndexStructure.Flat);
        Flip(path, OffsetOf(path, IndexFile.Section.Full, 2500L * D * 4 + 17));
        using var index = VectorIndex.Open(path, memoryMap: true);       // open does not read the vectors
        Assert.NotNull(index.Get("k0"));                                  // another chunk: fine
        Assert.NotNull(index.Get("k2495"));                               // the last slot before the damaged chunk
        var e = Assert.Throws<RotorException>(() => index.Get("k2500"));
        Assert.Contains(path, e.Message);
        Assert.Contains("section Full", e.Message);
        // Every later use of the chunk fails the same way: a rescored search whose candidates include the slot.
        var stored = index.Get("k0")!.Vector.ToArray();
        var search = Assert.Throws<RotorException>(() => index.Search(VectorOf(path, 2501), 5, new SearchOptions { RescoreFactor = 10 }));
        Assert.Contains("section Full", search.Message);
        // Saving reads every vector: it fails instead of writing the damage under new checksums, and so does a write.
        string other = Path.Combine(Path.GetDirectoryName(path)!, "other.rix");
        Assert.Contains("section Full", Assert.Throws<RotorException>(() => index.Save(other)).Message);
        Assert.False(File.Exists(other));
        Assert.Contains("section Full", Assert.Throws<RotorException>(() => index.Add([new IndexRecord("new", stored)])).Message);

        var v = Assert.Throws<RotorException>(() => VectorIndex.VerifyFile(path));
        Assert.Contains(path, v.Message);
        Assert.Contains("section Full", v.Message);
        Assert.Contains($"bytes {2500L * D * 4 / IndexFile.ChunkBytes * IndexFile.ChunkBytes}..", v.Message);
    }

    /// <summary>The stored vector of a slot, read from a good copy (the records are made from a fixed seed).</summary>
    private static float[] VectorOf(string path, int slot) => TestData.Records(N, D, 3)[slot].Vector.ToArray();

    [Fact]
    public void DamagedCodesAreFoundByVerifyAndByTheFirstScan()
    {
        string path = Build(IndexStructure.Flat);
        Flip(path, OffsetOf(path, IndexFile.Section.Codes, 2900L * 64 + 3));
        using var index = VectorIndex.Open(path, memoryMap: true);
        Assert.NotNull(index.Get("k2900"));          // the kept vector, not the code: still good
        var e = Assert.Throws<RotorException>(() => index.Search(TestData.Query(D, 1), 5));
        Assert.Contains(path, e.Message);
        Assert.Contains("section Codes", e.Message);
        Assert.Contains("section Codes", Assert.Throws<RotorException>(() => index.Search(TestData.Query(D, 2), 5)).Message);
        Assert.Contains("section Codes", Assert.Throws<RotorException>(() => VectorIndex.VerifyFile(path)).Message);
        // Copied at open, the same file fails at once.
        Assert.Contains("section Codes", Assert.Throws<RotorException>(() => VectorIndex.Open(path, memoryMap: false)).Message);
    }

    [Fact]
    public void DamageInASmallSectionFailsAtOpen()
    {
        string path = Build(IndexStructure.Hnsw);
        Flip(path, OffsetOf(path, IndexFile.Section.Keys, 40));
        Assert.Contains("section Keys", Assert.Throws<RotorException>(() => VectorIndex.Open(path, memoryMap: true)).Message);
        string path2 = Build(IndexStructure.Hnsw, "b.rix");
        Flip(path2, OffsetOf(path2, IndexFile.Section.Chunks, 100));
        Assert.Contains("section Chunks", Assert.Throws<RotorException>(() => VectorIndex.Open(path2, memoryMap: true)).Message);
        Assert.Contains("section Chunks", Assert.Throws<RotorException>(() => VectorIndex.VerifyFile(path2)).Message);
    }

    [Fact]
    public void VerifyReportsProgressToTheTotalAndPassesAGoodFile()
    {
        string path = Build(IndexStructure.Hnsw);
        var calls = new List<(long Done, long Total)>();
        VectorIndex.VerifyFile(path, (d, t) => calls.Add((d, t)));
        var h = IndexFile.ReadHeader(path);
        long total = h.Sections.Values.Sum(s => s.Length);
        Assert.All(calls, c => Assert.Equal(total, c.Total));
        Assert.Equal(total, calls[^1].Done);
        Assert.True(calls.Select(c => c.Done).SequenceEqual(calls.Select(c => c.Done).Order()));
    }

    /// <summary>A file without the chunk checksums (written before they existed): a mapped section is checked whole on
    /// its first use.</summary>
    [Fact]
    public void AFileWithoutChunkChecksumsIsCheckedASectionAtATime()
    {
        string path = Build(IndexStructure.Flat);
        byte[] bytes = File.ReadAllBytes(path);
        var hs = bytes.AsSpan(0, IndexFile.HeaderBytes);
        int n = (int)BinaryPrimitives.ReadUInt32LittleEndian(hs[68..]);
        int found = -1;
        for (int i = 0; i < n; i++)
            if (BinaryPrimitives.ReadUInt32LittleEndian(hs[(IndexFile.SectionTableOffset + i * IndexFile.SectionEntryBytes)..]) == (uint)IndexFile.Section.Chunks) found = i;
        Assert.Equal(n - 1, found);      // written last
        hs.Slice(IndexFile.SectionTableOffset + found * IndexFile.SectionEntryBytes, IndexFile.SectionEntryBytes).Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(hs[68..], (uint)(n - 1));
        BinaryPrimitives.WriteUInt64LittleEndian(hs[IndexFile.HeaderChecksumOffset..], XxHash3.HashToUInt64(hs[..IndexFile.HeaderChecksumOffset]));
        File.WriteAllBytes(path, bytes);

        using (var index = VectorIndex.Open(path, memoryMap: true))
        {
            Assert.Equal(0, index.MappedChecked.Checked);
            Assert.NotNull(index.Get("k7"));
            Assert.Equal((long)N * D * 4, index.MappedChecked.Checked);     // the whole Full section
        }
        VectorIndex.VerifyFile(path);
        Flip(path, OffsetOf(path, IndexFile.Section.Full, 5));
        using (var index = VectorIndex.Open(path, memoryMap: true))
            Assert.Contains("section Full", Assert.Throws<RotorException>(() => index.Get("k2999")).Message);
        Assert.Contains("section Full", Assert.Throws<RotorException>(() => VectorIndex.VerifyFile(path)).Message);
    }

    /// <summary>Concurrent first reads of the same chunks: every search gets the results of a checked open.</summary>
    [Fact]
    public void ConcurrentFirstUsesAgree()
    {
        string path = Build(IndexStructure.Flat);
        using var copied = VectorIndex.Open(path, memoryMap: false);
        var q = TestData.Query(D, 4);
        var expect = copied.Search(q, 5, new SearchOptions { RescoreFactor = 6 }).Select(h => h.Key).ToArray();
        using var mapped = VectorIndex.Open(path, memoryMap: true);
        Parallel.For(0, 8, _ => Assert.Equal(expect, mapped.Search(q, 5, new SearchOptions { RescoreFactor = 6 }).Select(h => h.Key).ToArray()));
    }

    /// <summary><see cref="IndexMemory"/> from the header agrees with the opened index's sizes; the parts it names add up to
    /// the file (with the padding that aligns sections to 4096 bytes).</summary>
    [Fact]
    public void MemoryFromTheHeaderAgreesWithTheOpenedIndex()
    {
        string path = Build(IndexStructure.Hnsw);
        var m = IndexMemory.Of(path);
        using var index = VectorIndex.Open(path, memoryMap: true);
        var s = index.Stats;
        Assert.Equal(s.CodeBytes, m.CodeBytes);
        Assert.Equal(s.FullPrecisionBytes, m.FullBytes);
        Assert.Equal(s.Slots, m.Slots);
        Assert.Equal(s.Count, m.Live);
        Assert.False(m.Mapped);                                      // a 3 MB file is copied at open
        Assert.Equal(m.CodeBytes + m.FullBytes + m.SmallBytes, m.ReadAtOpenBytes);
        long padding = m.FileBytes - (m.CodeBytes + m.FullBytes + m.SmallBytes);
        Assert.InRange(padding, 0, IndexFile.MaxSections * IndexFile.Align);
        Assert.Equal(m.CodeBytes, m.ExactScanBytes);
        Assert.InRange(m.GraphSearchBytes(), 1, m.CodeBytes);
        Assert.Equal(10 * 2 * IndexMemory.PageBytes, m.RescoreBytes(10));   // a 1 KiB vector on at most 2 pages
    }
}
