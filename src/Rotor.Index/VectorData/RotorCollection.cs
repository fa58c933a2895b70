using System.Globalization;
using System.Linq.Expressions;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.VectorData;
using Microsoft.Extensions.VectorData.ProviderServices;
using VdIndexKind = Microsoft.Extensions.VectorData.IndexKind;

namespace Rotor.Index.VectorData;

/// <summary>
/// A collection of a <see cref="RotorVectorStore"/>: records of <typeparamref name="TRecord"/> with a key of
/// <typeparamref name="TKey"/> (string, Guid, int or long; object for dynamic collections), one vector property and
/// data properties stored as index fields (filterable by equality and ranges). Filters are LINQ expressions made of
/// <c>== != &lt; &lt;= &gt; &gt;= &amp;&amp; || !</c> over data properties and constants or captured values.
/// Distance functions: CosineSimilarity (default), CosineDistance, DotProductSimilarity, NegativeDotProductSimilarity,
/// EuclideanDistance, EuclideanSquaredDistance. Index kinds: Flat (default) and Hnsw.
/// </summary>
/// <typeparam name="TKey">The key type.</typeparam>
/// <typeparam name="TRecord">The record type.</typeparam>
public sealed class RotorCollection<TKey, TRecord> : VectorStoreCollection<TKey, TRecord>
    where TKey : notnull
    where TRecord : class
{
    private readonly RotorVectorStore _store;
    private readonly CollectionModel _model;
    private readonly VectorPropertyModel _vector;
    private readonly Metric _metric;
    private readonly string _distance;
    private readonly IndexStructure _structure;

    internal RotorCollection(RotorVectorStore store, string name, VectorStoreCollectionDefinition? definition, bool dynamic)
    {
        _store = store;
        Name = RotorVectorStore.CheckName(name);
        _model = dynamic
            ? new RotorModelBuilder().BuildDynamic(definition!, defaultEmbeddingGenerator: null)
            : new RotorModelBuilder().Build(typeof(TRecord), typeof(TKey), definition, defaultEmbeddingGenerator: null);
        _vector = _model.VectorProperty;
        var keyType = _model.KeyProperty.Type;
        if (keyType != typeof(string) && keyType != typeof(Guid) && keyType != typeof(int) && keyType != typeof(long))
            throw new NotSupportedException($"key property '{_model.KeyProperty.ModelName}' has type {keyType.Name}: Rotor keys are string, Guid, int or long");
        _distance = _vector.DistanceFunction ?? DistanceFunction.CosineSimilarity;
        _metric = _distance switch
        {
            DistanceFunction.CosineSimilarity or DistanceFunction.CosineDistance => Metric.Cosine,
            DistanceFunction.DotProductSimilarity or DistanceFunction.NegativeDotProductSimilarity => Metric.Dot,
            DistanceFunction.EuclideanDistance or DistanceFunction.EuclideanSquaredDistance => Metric.L2,
            _ => throw new NotSupportedException($"distance function '{_distance}' of vector '{_vector.ModelName}' is not supported by Rotor"),
        };
        _structure = (_vector.IndexKind ?? VdIndexKind.Flat) switch
        {
            VdIndexKind.Flat => IndexStructure.Flat,
            VdIndexKind.Hnsw => IndexStructure.Hnsw,
            var k => throw new NotSupportedException($"index kind '{k}' of vector '{_vector.ModelName}' is not supported by Rotor (Flat, Hnsw)"),
        };
        Metadata = new VectorStoreCollectionMetadata { VectorStoreSystemName = "rotor", VectorStoreName = store.Options.Directory, CollectionName = Name };
    }

    /// <inheritdoc/>
    public override string Name { get; }

    internal VectorStoreCollectionMetadata Metadata { get; }

    /// <inheritdoc/>
    public override Task<bool> CollectionExistsAsync(CancellationToken cancellationToken = default) => Task.FromResult(_store.Exists(Name));

    /// <inheritdoc/>
    public override Task EnsureCollectionExistsAsync(CancellationToken cancellationToken = default)
    {
        var idx = _store.GetOrCreate(Name, () => new VectorIndexOptions
        {
            Dimensions = _vector.Dimensions, Code = _store.Options.Code, Metric = _metric, Structure = _structure, Hnsw = _store.Options.Hnsw,
        });
        if (idx.Options.Dimensions != _vector.Dimensions || idx.Options.Metric != _metric)
            throw new VectorStoreException($"collection '{Name}' exists with {idx.Options.Dimensions} dimensions and metric {idx.Options.Metric}; the record definition asks for {_vector.Dimensions} and {_metric}");
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public override Task EnsureCollectionDeletedAsync(CancellationToken cancellationToken = default)
    {
        _store.DeleteCollection(Name);
        return Task.CompletedTask;
    }

    private VectorIndex Index => _store.Find(Name) ?? throw new VectorStoreException($"collection '{Name}' does not exist: call EnsureCollectionExistsAsync first")
    {
        VectorStoreSystemName = "rotor", CollectionName = Name,
    };

    /// <summary>Saves the collection to its file (with a store directory); a no-op in memory.</summary>
    public void Save()
    {
        if (_store.FileOf(Name) is { } f) Index.Save(f);
    }

    private void Changed()
    {
        if (_store.Options.SaveOnChange) Save();
    }

    // ---- records ------------------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public override Task<TRecord?> GetAsync(TKey key, RecordRetrievalOptions? options = null, CancellationToken cancellationToken = default)
    {
        var r = Index.Get(KeyString(key));
        return Task.FromResult(r is null ? null : ToRecord(r, options?.IncludeVectors ?? false));
    }

    /// <inheritdoc/>
    public override async IAsyncEnumerable<TRecord> GetAsync(Expression<Func<TRecord, bool>> filter, int top, FilteredRecordRetrievalOptions<TRecord>? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentOutOfRangeException.ThrowIfLessThan(top, 1);
        options ??= new FilteredRecordRetrievalOptions<TRecord>();
        var f = new FilterTranslator(_model).Translate(filter);
        var sort = options.OrderBy?.Invoke(new FilteredRecordRetrievalOptions<TRecord>.OrderByDefinition()).Values;
        List<IndexRecord> found;
        if (sort is { Count: > 0 })
        {
            found = Index.Query(f, int.MaxValue, 0, options.IncludeVectors);
            IOrderedEnumerable<IndexRecord>? ordered = null;
            foreach (var s in sort)
            {
                string field = _model.GetDataOrKeyProperty(s.PropertySelector).StorageName;
                Func<IndexRecord, object?> sel = r => r.Fields is not null && r.Fields.TryGetValue(field, out var v) ? v : null;
                var cmp = Comparer<object?>.Create((a, b) => a is null ? (b is null ? 0 : -1) : b is null ? 1 : FieldValues.CompareValues(a, b) ?? 0);
                ordered = ordered is null
                    ? (s.Ascending ? found.OrderBy(sel, cmp) : found.OrderByDescending(sel, cmp))
                    : (s.Ascending ? ordered.ThenBy(sel, cmp) : ordered.ThenByDescending(sel, cmp));
            }
            found = ordered!.Skip(options.Skip).Take(top).ToList();
        }
        else found = Index.Query(f, top, options.Skip, options.IncludeVectors);
        await Task.CompletedTask;
        foreach (var r in found)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return ToRecord(r, options.IncludeVectors);
        }
    }

    /// <inheritdoc/>
    public override Task DeleteAsync(TKey key, CancellationToken cancellationToken = default)
    {
        if (Index.Delete(KeyString(key))) Changed();
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public override Task DeleteAsync(IEnumerable<TKey> keys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (Index.Delete(keys.Select(KeyString).ToList()) > 0) Changed();
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public override Task UpsertAsync(TRecord record, CancellationToken cancellationToken = default) => UpsertAsync([record], cancellationToken);

    /// <inheritdoc/>
    public override Task UpsertAsync(IEnumerable<TRecord> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        var list = records.Select(ToIndexRecord).ToList();
        if (list.Count == 0) return Task.CompletedTask;
        Index.Upsert(list);
        Changed();
        return Task.CompletedTask;
    }

    // ---- search -------------------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public override async IAsyncEnumerable<VectorSearchResult<TRecord>> SearchAsync<TInput>(TInput searchValue, int top, VectorSearchOptions<TRecord>? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(top, 1);
        options ??= new VectorSearchOptions<TRecord>();
        ReadOnlyMemory<float> query = searchValue switch
        {
            ReadOnlyMemory<float> m => m,
            float[] a => a,
            Embedding<float> e => e.Vector,
            null => throw new ArgumentNullException(nameof(searchValue)),
            _ => throw new NotSupportedException($"search value of type {typeof(TInput).Name}: Rotor searches ReadOnlyMemory<float>, float[] or Embedding<float> (embedding generation is not configured)"),
        };
        if (options.VectorProperty is not null) _model.GetVectorPropertyOrSingle(options);
        var index = Index;
        var filter = options.Filter is null ? null : new FilterTranslator(_model).Translate(options.Filter);
        var hits = index.Search(query.Span, top + options.Skip, new SearchOptions
        {
            Filter = filter, IncludeVectors = options.IncludeVectors,
            RescoreFactor = index.Options.Code == CodeKind.Float32 || !index.Options.KeepFullPrecision ? 0 : _store.Options.RescoreFactor,
        });
        await Task.CompletedTask;
        foreach (var h in hits.Skip(options.Skip))
        {
            cancellationToken.ThrowIfCancellationRequested();
            double score = _distance switch
            {
                DistanceFunction.CosineDistance => 1 - h.Score,
                DistanceFunction.NegativeDotProductSimilarity => -h.Score,
                DistanceFunction.EuclideanDistance => Math.Sqrt(h.Score),
                _ => h.Score,
            };
            if (options.ScoreThreshold is double t && (IsSimilarity ? score < t : score > t)) continue;
            yield return new VectorSearchResult<TRecord>(ToRecord(new IndexRecord(h.Key, h.Vector ?? ReadOnlyMemory<float>.Empty, h.Fields), options.IncludeVectors), score);
        }
    }

    private bool IsSimilarity => _distance is DistanceFunction.CosineSimilarity or DistanceFunction.DotProductSimilarity;

    /// <inheritdoc/>
    public override object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is not null ? null
            : serviceType == typeof(VectorStoreCollectionMetadata) ? Metadata
            : serviceType == typeof(VectorIndex) ? _store.Find(Name)
            : serviceType.IsInstanceOfType(this) ? this : null;
    }

    // ---- mapping ------------------------------------------------------------------------------------------------

    private string KeyString(TKey key) => KeyToString(key is null ? throw new ArgumentNullException(nameof(key)) : key);

    private static string KeyToString(object key) => key switch
    {
        string s => s,
        Guid g => g.ToString("D"),
        int i => i.ToString(CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        _ => throw new NotSupportedException($"key of type {key.GetType().Name}: Rotor keys are string, Guid, int or long"),
    };

    private object KeyFromString(string s)
    {
        var t = _model.KeyProperty.Type;
        if (t == typeof(string)) return s;
        if (t == typeof(Guid)) return Guid.Parse(s);
        if (t == typeof(int)) return int.Parse(s, CultureInfo.InvariantCulture);
        return long.Parse(s, CultureInfo.InvariantCulture);
    }

    private IndexRecord ToIndexRecord(TRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        object key = _model.KeyProperty.GetValueAsObject(record) ?? throw new ArgumentException($"record has a null key '{_model.KeyProperty.ModelName}'");
        object? v = _vector.GetValueAsObject(record);
        ReadOnlyMemory<float> vec = v switch
        {
            ReadOnlyMemory<float> m => m,
            float[] a => a,
            Embedding<float> e => e.Vector,
            null => throw new ArgumentException($"record '{KeyToString(key)}' has no vector in '{_vector.ModelName}'"),
            _ => throw new NotSupportedException($"vector property '{_vector.ModelName}' holds {v.GetType().Name}"),
        };
        var fields = new Dictionary<string, object>(StringComparer.Ordinal);
        foreach (var p in _model.DataProperties)
            if (ToStored(p.GetValueAsObject(record)) is { } sv) fields[p.StorageName] = sv;
        return new IndexRecord(KeyToString(key), vec, fields);
    }

    private TRecord ToRecord(IndexRecord r, bool includeVectors)
    {
        var record = _model.CreateRecord<TRecord>()!;
        _model.KeyProperty.SetValueAsObject(record, KeyFromString(r.Key));
        foreach (var p in _model.DataProperties)
            if (r.Fields is not null && r.Fields.TryGetValue(p.StorageName, out object? v))
                p.SetValueAsObject(record, FromStored(v, p.Type));
        if (includeVectors && !r.Vector.IsEmpty)
        {
            var t = _vector.Type;
            object vec = t == typeof(float[]) ? r.Vector.ToArray() : t == typeof(Embedding<float>) ? new Embedding<float>(r.Vector) : r.Vector;
            _vector.SetValueAsObject(record, vec);
        }
        return record;
    }

    /// <summary>A property value as a stored field: numbers widen to long/double, Guid to its string, DateTime to
    /// ticks, DateTimeOffset to UTC ticks (so that ranges compare in time order).</summary>
    internal static object? ToStored(object? value) => value switch
    {
        null => null,
        Guid g => g.ToString("D"),
        DateTime dt => dt.Ticks,
        DateTimeOffset dto => dto.UtcTicks,
        _ => FieldValues.Normalize(value, "value"),
    };

    private static object? FromStored(object v, Type type)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        if (t == typeof(string)) return (string)v;
        if (t == typeof(Guid)) return Guid.Parse((string)v);
        if (t == typeof(DateTime)) return new DateTime((long)v);
        if (t == typeof(DateTimeOffset)) return new DateTimeOffset((long)v, TimeSpan.Zero);
        if (t == typeof(bool)) return (bool)v;
        return Convert.ChangeType(v, t, CultureInfo.InvariantCulture);
    }
}
