using Rotor.Rag.Embeddings;
using Xunit;

namespace Rotor.Rag.Tests;

[Collection("MiniLM")]
public sealed class EmbeddingCacheTests(MiniLmFixture fixture) : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void SavesReusesAndNoticesStaleInputs()
    {
        string path = Path.Combine(_dir, "corpus.emb");
        string[] texts = ["The cat sits outside.", "A man is playing a guitar.", "Albedo is reflectance."];
        var log = new StringWriter();
        var (first, fromCache1) = EmbeddingCache.GetOrCompute(path, texts, fixture.Embedder, log: log);
        Assert.False(fromCache1);
        Assert.True(File.Exists(path));
        var (second, fromCache2) = EmbeddingCache.GetOrCompute(path, texts, fixture.Embedder, log: log);
        Assert.True(fromCache2);
        Assert.Equal(first, second);
        var expected = new float[texts.Length * 384];
        fixture.Embedder.Embed(texts, expected);
        Assert.Equal(expected, second);

        string[] changed = [texts[0], texts[1], "Albedo is reflectivity."];
        var (third, fromCache3) = EmbeddingCache.GetOrCompute(path, changed, fixture.Embedder, log: log);
        Assert.False(fromCache3);
        Assert.Contains("stale (the texts differ)", log.ToString());
        Assert.Equal(first.AsSpan(0, 2 * 384).ToArray(), third.AsSpan(0, 2 * 384).ToArray());
        var loaded = EmbeddingCache.Load(path);
        Assert.Equal(("all-MiniLM-L6-v2", 384, 3), (loaded.Model, loaded.Dimensions, loaded.Count));
        Assert.Equal(third, loaded.Vectors);
    }

    /// <summary>A second user of one cache waits for the first (which holds its lock while it embeds and saves) and
    /// then reads its result, or fails with the lock named when it may not wait that long.</summary>
    [Fact]
    public async Task ASecondUserWaitsForTheFirstAndReadsItsResult()
    {
        string path = Path.Combine(_dir, "shared.emb");
        string[] texts = ["one text", "another text"];
        using (var held = FileLock.Acquire(path, TimeSpan.Zero))
        {
            var e = Assert.Throws<RotorException>(() => EmbeddingCache.GetOrCompute(path, texts, fixture.Embedder, lockWait: TimeSpan.FromMilliseconds(200)));
            Assert.Contains("being written by another process", e.Message);
            Assert.Contains(held.LockPath, e.Message);
            Assert.False(File.Exists(path));
        }
        // The first user fills the cache while the second waits on it.
        var first = FileLock.Acquire(path, TimeSpan.Zero);
        var log = new StringWriter();
        var second = Task.Run(() => EmbeddingCache.GetOrCompute(path, texts, fixture.Embedder, log: TextWriter.Synchronized(log), lockWait: TimeSpan.FromSeconds(60)));
        await Task.Delay(300);
        Assert.False(second.IsCompleted);
        var vectors = new float[texts.Length * fixture.Embedder.Dimensions];
        fixture.Embedder.Embed(texts, vectors);
        EmbeddingCache.GetOrCompute(Path.Combine(_dir, "other.emb"), texts, fixture.Embedder); // the file the first user writes
        File.Copy(Path.Combine(_dir, "other.emb"), path);
        first.Dispose();
        var (got, fromCache) = await second;
        Assert.True(fromCache, log.ToString());
        Assert.Equal(vectors, got);
        Assert.Contains("waiting: ", log.ToString());

        // A cache that holds the texts is read without the lock (it serves from a folder this process cannot write).
        File.Delete(path + ".lock");
        Assert.True(EmbeddingCache.GetOrCompute(path, texts, fixture.Embedder).FromCache);
        Assert.False(File.Exists(path + ".lock"));
    }

    [Fact]
    public void CorruptOrTruncatedFilesAreRefusedByName()
    {
        string path = Path.Combine(_dir, "c.emb");
        string[] texts = ["one text", "another text"];
        EmbeddingCache.GetOrCompute(path, texts, fixture.Embedder);
        byte[] good = File.ReadAllBytes(path);

        byte[] flipped = (byte[])good.Clone();
        flipped[good.Length / 2] ^= 0x40;
        File.WriteAllBytes(path, flipped);
        var e = Assert.Throws<RotorException>(() => EmbeddingCache.GetOrCompute(path, texts, fixture.Embedder));
        Assert.Contains(path, e.Message);
        Assert.Contains("checksum", e.Message);

        File.WriteAllBytes(path, good.AsSpan(0, good.Length - 100).ToArray());
        Assert.Throws<RotorException>(() => EmbeddingCache.Load(path));

        File.WriteAllText(path, "definitely not an embedding cache file");
        e = Assert.Throws<RotorException>(() => EmbeddingCache.Load(path));
        Assert.Contains("RTEMB001", e.Message);
    }
}
