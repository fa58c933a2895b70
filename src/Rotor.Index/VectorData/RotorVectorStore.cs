using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Microsoft.Extensions.VectorData;

namespace Rotor.Index.VectorData;

/// <summary>Options of a <see cref="RotorVectorStore"/>.</summary>
public sealed record RotorVectorStoreOptions
{
    /// <summary>Directory holding one index file a collection (<c>NAME.rix</c>); null keeps collections in memory only.</summary>
    public string? Directory { get; init; }
    /// <summary>Code used for the vectors of new collections.</summary>
    public CodeKind Code { get; init; } = CodeKind.Ternary;
    /// <summary>Rescoring factor of searches over compact codes (full-precision vectors are kept); 0 to rank by code only.</summary>
    public int RescoreFactor { get; init; } = 4;
    /// <summary>Graph settings of collections whose vector property asks for <see cref="IndexKind.Hnsw"/>.</summary>
    public HnswSettings Hnsw { get; init; } = new();
    /// <summary>With a <see cref="Directory"/>: save a collection (atomically) after every upsert and delete. Turn off
    /// for bulk loads and call <see cref="RotorCollection{TKey, TRecord}.Save"/> at the end.</summary>
    public bool SaveOnChange { get; init; } = true;
}

/// <summary>
/// A <see cref="VectorStore"/> over Rotor indexes: each collection is a <see cref="VectorIndex"/> (flat or HNSW, by the
/// vector property's <see cref="VectorStoreVectorAttribute.IndexKind"/>), kept in memory and, with a directory, in an
/// index file. Two collection objects of the same name share one index, as with the official in-memory connector.
/// </summary>
public sealed partial class RotorVectorStore : VectorStore
{
    private readonly ConcurrentDictionary<string, VectorIndex> _indexes = new(StringComparer.Ordinal);
    private readonly object _gate = new();

    /// <summary>Creates a store.</summary>
    public RotorVectorStore(RotorVectorStoreOptions? options = null)
    {
        Options = options ?? new RotorVectorStoreOptions();
        if (Options.Directory is not null) System.IO.Directory.CreateDirectory(Options.Directory);
        Metadata = new VectorStoreMetadata { VectorStoreSystemName = "rotor", VectorStoreName = Options.Directory };
    }

    /// <summary>The store options.</summary>
    public RotorVectorStoreOptions Options { get; }
    internal VectorStoreMetadata Metadata { get; }

    /// <inheritdoc/>
    public override VectorStoreCollection<TKey, TRecord> GetCollection<TKey, TRecord>(string name, VectorStoreCollectionDefinition? definition = null)
    {
        if (typeof(TRecord) == typeof(Dictionary<string, object?>))
            throw new ArgumentException("use GetDynamicCollection for Dictionary<string, object?> records");
        return new RotorCollection<TKey, TRecord>(this, name, definition, dynamic: false);
    }

    /// <inheritdoc/>
    public override VectorStoreCollection<object, Dictionary<string, object?>> GetDynamicCollection(string name, VectorStoreCollectionDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        return new RotorCollection<object, Dictionary<string, object?>>(this, name, definition, dynamic: true);
    }

    /// <inheritdoc/>
    public override async IAsyncEnumerable<string> ListCollectionNamesAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Task.CompletedTask;
        var names = new SortedSet<string>(_indexes.Keys, StringComparer.Ordinal);
        if (Options.Directory is not null)
            foreach (string f in System.IO.Directory.EnumerateFiles(Options.Directory, "*.rix"))
                names.Add(Path.GetFileNameWithoutExtension(f));
        foreach (string n in names) yield return n;
    }

    /// <inheritdoc/>
    public override Task<bool> CollectionExistsAsync(string name, CancellationToken cancellationToken = default)
        => Task.FromResult(Exists(name));

    /// <inheritdoc/>
    public override Task EnsureCollectionDeletedAsync(string name, CancellationToken cancellationToken = default)
    {
        DeleteCollection(name);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public override object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is not null ? null
            : serviceType == typeof(VectorStoreMetadata) ? Metadata
            : serviceType.IsInstanceOfType(this) ? this : null;
    }

    // ---- collection registry ------------------------------------------------------------------------------------

    internal static string CheckName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!NamePattern().IsMatch(name)) throw new ArgumentException($"collection name '{name}' must be letters, digits, '_' or '-' (it names a file)", nameof(name));
        return name;
    }

    [GeneratedRegex("^[A-Za-z0-9_-]{1,128}$")]
    private static partial Regex NamePattern();

    internal string? FileOf(string name) => Options.Directory is null ? null : Path.Combine(Options.Directory, name + ".rix");

    internal bool Exists(string name) => _indexes.ContainsKey(name) || (FileOf(name) is { } f && File.Exists(f));

    /// <summary>The open index of a collection: opened from its file on first use; null if it does not exist.</summary>
    internal VectorIndex? Find(string name)
    {
        if (_indexes.TryGetValue(name, out var idx)) return idx;
        lock (_gate)
        {
            if (_indexes.TryGetValue(name, out idx)) return idx;
            if (FileOf(name) is { } f && File.Exists(f)) return _indexes[name] = VectorIndex.Open(f);
            return null;
        }
    }

    internal VectorIndex GetOrCreate(string name, Func<VectorIndexOptions> options)
    {
        if (Find(name) is { } idx) return idx;
        lock (_gate)
        {
            if (_indexes.TryGetValue(name, out idx)) return idx;
            idx = VectorIndex.Create(options());
            if (FileOf(name) is { } f) idx.Save(f);
            return _indexes[name] = idx;
        }
    }

    internal void DeleteCollection(string name)
    {
        lock (_gate)
        {
            if (_indexes.TryRemove(name, out var idx)) idx.Dispose();
            if (FileOf(name) is { } f && File.Exists(f)) File.Delete(f);
        }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (var idx in _indexes.Values) idx.Dispose();
        base.Dispose(disposing);
    }
}
