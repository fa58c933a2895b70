using Microsoft.Extensions.VectorData;
using Rotor.Index.VectorData;
using Rotor.Index.Benchmarking;
using Xunit;

namespace Rotor.Index.Tests;

/// <summary>Written against Microsoft.Extensions.VectorData alone: only the store construction names Rotor.</summary>
public class VectorDataTests
{
    public sealed class Hotel
    {
        [VectorStoreKey] public string Id { get; set; } = "";
        [VectorStoreData(IsIndexed = true)] public string Name { get; set; } = "";
        [VectorStoreData(IsIndexed = true)] public int Rating { get; set; }
        [VectorStoreData] public double Price { get; set; }
        [VectorStoreData] public bool Open { get; set; }
        [VectorStoreData] public DateTimeOffset Built { get; set; }
        [VectorStoreVector(32, DistanceFunction = DistanceFunction.CosineSimilarity, IndexKind = IndexKind.Flat)]
        public ReadOnlyMemory<float> Embedding { get; set; }
    }

    public sealed class Doc
    {
        [VectorStoreKey] public Guid Id { get; set; }
        [VectorStoreData] public string? Text { get; set; }
        [VectorStoreVector(32, DistanceFunction = DistanceFunction.EuclideanDistance, IndexKind = IndexKind.Hnsw)]
        public float[]? Vector { get; set; }
    }

    private static VectorStore NewStore(string? dir = null, CodeKind code = CodeKind.Ternary) =>
        new RotorVectorStore(new RotorVectorStoreOptions { Directory = dir, Code = code });

    private static List<Hotel> Hotels(int n)
    {
        float[] v = SyntheticVectors.Clustered(n, 32, 8, 5);
        return Enumerable.Range(0, n).Select(i => new Hotel
        {
            Id = $"h{i}", Name = $"Hotel {i}", Rating = i % 5 + 1, Price = 50 + i, Open = i % 2 == 0,
            Built = new DateTimeOffset(1990 + i % 30, 1, 1, 0, 0, 0, TimeSpan.Zero), Embedding = v.AsMemory(i * 32, 32),
        }).ToList();
    }

    [Fact]
    public async Task CrudAndSearchThroughTheAbstraction()
    {
        using VectorStore store = NewStore(code: CodeKind.Float32);
        VectorStoreCollection<string, Hotel> hotels = store.GetCollection<string, Hotel>("hotels");
        Assert.False(await hotels.CollectionExistsAsync());
        await hotels.EnsureCollectionExistsAsync();
        Assert.True(await hotels.CollectionExistsAsync());
        Assert.Contains("hotels", await store.ListCollectionNamesAsync().ToListAsync());

        var data = Hotels(300);
        await hotels.UpsertAsync(data);
        var h7 = await hotels.GetAsync("h7", new RecordRetrievalOptions { IncludeVectors = true });
        Assert.NotNull(h7);
        Assert.Equal("Hotel 7", h7!.Name);
        Assert.Equal(3, h7.Rating);
        Assert.Equal(57.0, h7.Price);
        Assert.False(h7.Open);
        Assert.Equal(data[7].Built, h7.Built);
        Assert.Equal(32, h7.Embedding.Length);
        Assert.Null(await hotels.GetAsync("nope"));

        // The nearest neighbour of a stored vector is itself, with cosine similarity 1.
        var results = await hotels.SearchAsync(data[42].Embedding, 5).ToListAsync();
        Assert.Equal(5, results.Count);
        Assert.Equal("h42", results[0].Record.Id);
        Assert.Equal(1.0, results[0].Score!.Value, 1e-4);
        Assert.True(results.Zip(results.Skip(1)).All(p => p.First.Score >= p.Second.Score));

        // Filters: equality, ranges, captured values, && || !.
        int minRating = 4;
        var filtered = await hotels.SearchAsync(data[0].Embedding, 20, new VectorSearchOptions<Hotel>
        {
            Filter = h => h.Rating >= minRating && h.Price < 200 && !(h.Name == "Hotel 3"),
        }).ToListAsync();
        Assert.NotEmpty(filtered);
        Assert.All(filtered, r => Assert.True(r.Record.Rating >= 4 && r.Record.Price < 200 && r.Record.Name != "Hotel 3"));
        var expected = data.Where(h => h.Rating >= 4 && h.Price < 200 && h.Name != "Hotel 3").Select(h => h.Id).ToHashSet();
        Assert.All(filtered, r => Assert.Contains(r.Record.Id, expected));
        var open = await hotels.SearchAsync(data[0].Embedding, 300, new VectorSearchOptions<Hotel> { Filter = h => h.Open || h.Rating == 2 }).ToListAsync();
        Assert.Equal(data.Count(h => h.Open || h.Rating == 2), open.Count);
        var dated = await hotels.GetAsync(h => h.Built >= new DateTimeOffset(2015, 1, 1, 0, 0, 0, TimeSpan.Zero), 1000).ToListAsync();
        Assert.Equal(data.Count(h => h.Built.Year >= 2015), dated.Count);

        // Skip and score threshold.
        var skipped = await hotels.SearchAsync(data[42].Embedding, 3, new VectorSearchOptions<Hotel> { Skip = 1 }).ToListAsync();
        Assert.Equal(results.Skip(1).Take(3).Select(r => r.Record.Id), skipped.Select(r => r.Record.Id));
        var strict = await hotels.SearchAsync(data[42].Embedding, 50, new VectorSearchOptions<Hotel> { ScoreThreshold = 0.999 }).ToListAsync();
        Assert.All(strict, r => Assert.True(r.Score >= 0.999));

        // GetAsync with filter, ordering and paging.
        var top = await hotels.GetAsync(h => h.Rating == 5, 3, new FilteredRecordRetrievalOptions<Hotel>
        {
            OrderBy = o => o.Descending(h => h.Price), Skip = 1,
        }).ToListAsync();
        Assert.Equal(data.Where(h => h.Rating == 5).OrderByDescending(h => h.Price).Skip(1).Take(3).Select(h => h.Id), top.Select(h => h.Id));

        // Upsert replaces, delete removes.
        data[42].Name = "Renamed";
        await hotels.UpsertAsync(data[42]);
        Assert.Equal("Renamed", (await hotels.GetAsync("h42"))!.Name);
        await hotels.DeleteAsync("h42");
        await hotels.DeleteAsync(["h1", "h2"]);
        Assert.Null(await hotels.GetAsync("h42"));
        var after = await hotels.GetAsync(["h1", "h3", "h42"]).ToListAsync();
        Assert.Equal(["h3"], after.Select(h => h.Id));

        // A second collection object of the same name sees the same records.
        var again = store.GetCollection<string, Hotel>("hotels");
        Assert.Equal("Hotel 3", (await again.GetAsync("h3"))!.Name);

        await hotels.EnsureCollectionDeletedAsync();
        Assert.False(await store.CollectionExistsAsync("hotels"));
        await Assert.ThrowsAsync<VectorStoreException>(() => hotels.GetAsync("h3"));
    }

    [Fact]
    public async Task CompactCodesRescoreToTheFloatRanking()
    {
        using VectorStore exact = NewStore(code: CodeKind.Float32);
        using VectorStore ternary = NewStore(code: CodeKind.Ternary);
        var a = exact.GetCollection<string, Hotel>("h");
        var b = ternary.GetCollection<string, Hotel>("h");
        await a.EnsureCollectionExistsAsync(); await b.EnsureCollectionExistsAsync();
        var data = Hotels(400);
        await a.UpsertAsync(data); await b.UpsertAsync(data);
        int same = 0;
        for (int q = 0; q < 10; q++)
        {
            var x = await a.SearchAsync(data[q * 13].Embedding, 5).Select(r => r.Record.Id).ToListAsync();
            var y = await b.SearchAsync(data[q * 13].Embedding, 5).Select(r => r.Record.Id).ToListAsync();
            same += x.Intersect(y).Count();
        }
        Assert.True(same >= 40, $"{same}/50 shared with the float ranking");
    }

    [Fact]
    public async Task GuidKeysHnswEuclideanAndPersistence()
    {
        string dir = TestData.TempDir();
        var ids = Enumerable.Range(0, 200).Select(i => new Guid(i, 0, 0, new byte[8])).ToArray();
        float[] v = SyntheticVectors.Clustered(200, 32, 4, 9);
        using (VectorStore store = NewStore(dir))
        {
            var docs = store.GetCollection<Guid, Doc>("docs");
            await docs.EnsureCollectionExistsAsync();
            await docs.UpsertAsync(Enumerable.Range(0, 200).Select(i => new Doc { Id = ids[i], Text = $"t{i}", Vector = v.AsSpan(i * 32, 32).ToArray() }));
            var r = await docs.SearchAsync(v.AsSpan(32, 32).ToArray(), 3, new VectorSearchOptions<Doc> { IncludeVectors = true }).ToListAsync();
            Assert.Equal(ids[1], r[0].Record.Id);
            Assert.True(r[0].Score < 1e-3); // Euclidean distance to itself
            Assert.True(r[1].Score >= r[0].Score);
            Assert.Equal(32, r[0].Record.Vector!.Length);
        }
        using (VectorStore reopened = NewStore(dir))
        {
            Assert.True(await reopened.CollectionExistsAsync("docs"));
            var docs = reopened.GetCollection<Guid, Doc>("docs");
            Assert.Equal("t17", (await docs.GetAsync(ids[17]))!.Text);
            Assert.Equal(200, await docs.GetAsync(d => d.Text != null, 1000).CountAsync());
        }
    }

    [Fact]
    public async Task DynamicCollections()
    {
        using VectorStore store = NewStore(code: CodeKind.Int8);
        var def = new VectorStoreCollectionDefinition
        {
            Properties =
            [
                new VectorStoreKeyProperty("Key", typeof(string)),
                new VectorStoreDataProperty("Year", typeof(int)),
                new VectorStoreVectorProperty("Vec", typeof(ReadOnlyMemory<float>), 32),
            ],
        };
        var col = store.GetDynamicCollection("dyn", def);
        await col.EnsureCollectionExistsAsync();
        float[] v = SyntheticVectors.Clustered(50, 32, 3, 1);
        await col.UpsertAsync(Enumerable.Range(0, 50).Select(i => new Dictionary<string, object?>
        {
            ["Key"] = $"d{i}", ["Year"] = 2000 + i, ["Vec"] = new ReadOnlyMemory<float>(v, i * 32, 32),
        }));
        var got = await col.GetAsync("d5");
        Assert.Equal(2005, got!["Year"]);
        var recent = await col.SearchAsync(new ReadOnlyMemory<float>(v, 0, 32), 100, new VectorSearchOptions<Dictionary<string, object?>>
        {
            Filter = r => (int)r["Year"]! >= 2040,
        }).ToListAsync();
        Assert.Equal(10, recent.Count);
    }

    [Fact]
    public async Task UnsupportedUsesFailClearly()
    {
        using VectorStore store = NewStore();
        var hotels = store.GetCollection<string, Hotel>("hotels");
        await hotels.EnsureCollectionExistsAsync();
        await hotels.UpsertAsync(Hotels(5));
        var e = await Assert.ThrowsAsync<NotSupportedException>(() => hotels.SearchAsync("text query", 3).ToListAsync().AsTask());
        Assert.Contains("String", e.Message);
        var f = await Assert.ThrowsAsync<NotSupportedException>(() => hotels.GetAsync(h => h.Name.StartsWith('H'), 3).ToListAsync().AsTask());
        Assert.Contains("not supported", f.Message);
        Assert.ThrowsAny<ArgumentException>(() => store.GetCollection<string, Hotel>("bad/name"));
    }
}
