using System.Globalization;
using Rotor.Index;
using Rotor.Rag.Search;
using RagHit = Rotor.Rag.Search.SearchHit;

namespace Rotor.Cli.Commands;

/// <summary>
/// A Rotor.Index <see cref="VectorIndex"/> behind Rotor.Rag's <see cref="IDenseSearcher"/>: hits come back as passage
/// ordinals through <c>ordinalOf</c> (record key to ordinal). Keys the map does not know are skipped.
/// </summary>
internal sealed class IndexDenseSearcher : IDenseSearcher, IDisposable
{
    private readonly VectorIndex _index;
    private readonly SearchOptions _search;
    private readonly Func<string, int?> _ordinalOf;
    private readonly bool _owns;

    public IndexDenseSearcher(VectorIndex index, Func<string, int?> ordinalOf, SearchOptions? search = null, bool ownsIndex = false)
    {
        _index = index;
        _ordinalOf = ordinalOf;
        _search = search ?? new SearchOptions { IncludeFields = false };
        _owns = ownsIndex;
    }

    /// <summary>An in-memory index of <paramref name="vectors"/>, (count, dims) row-major, keyed by ordinal.</summary>
    public static IndexDenseSearcher Build(float[] vectors, int dims, VectorIndexOptions options, SearchOptions search)
    {
        var index = VectorIndex.Create(options);
        int n = vectors.Length / dims;
        index.Add(Enumerable.Range(0, n).Select(i => new IndexRecord(i.ToString(CultureInfo.InvariantCulture), vectors.AsMemory(i * dims, dims))));
        return new IndexDenseSearcher(index, key => int.Parse(key, CultureInfo.InvariantCulture), search, ownsIndex: true);
    }

    public int Dimensions => _index.Options.Dimensions;

    public int Count => _index.Count;

    public IReadOnlyList<RagHit> Search(ReadOnlySpan<float> query, int k)
    {
        var hits = new List<RagHit>(k);
        foreach (var h in _index.Search(query, k, _search))
            if (_ordinalOf(h.Key) is int ord) hits.Add(new RagHit(ord, h.Score));
        return hits;
    }

    public void Dispose()
    {
        if (_owns) _index.Dispose();
    }
}
