using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Search;

namespace Rotor.Cluster;

// What travels between silos and clients. Every type is serialized by Orleans' generated code; the Id of a member is
// its wire identity and never changes meaning.

/// <summary>How the shards of a cluster index are built; fixed when the index is created.</summary>
/// <param name="Shards">Number of shards; a passage's shard is <see cref="ShardAssignment.ShardOf"/> of its id.</param>
/// <param name="Replicas">Copies of every shard, each on another silo.</param>
/// <param name="Dimensions">Embedding size.</param>
/// <param name="ModelSha256">SHA-256 of the embedding model: every silo must embed with the same model.</param>
/// <param name="Code">Code of the dense vectors.</param>
/// <param name="RescoreFactor">Candidates a result taken by the code and ranked again by float32 (0: none).</param>
/// <param name="Structure">Flat (exact scan) or HNSW graph in each shard.</param>
[GenerateSerializer, Alias("rotor.ShardSettings")]
public sealed record ShardSettings(
    [property: Id(0)] int Shards,
    [property: Id(1)] int Replicas,
    [property: Id(2)] int Dimensions,
    [property: Id(3)] string ModelSha256,
    [property: Id(4)] CodeKind Code,
    [property: Id(5)] int RescoreFactor,
    [property: Id(6)] IndexStructure Structure)
{
    /// <summary>Whether searches rank the code's candidates again by float32.</summary>
    public bool Rescores => Code != CodeKind.Float32 && RescoreFactor > 1;

    /// <summary>Throws <see cref="RotorException"/> naming the first value out of range.</summary>
    public void Validate()
    {
        if (Shards < 1 || Shards > 4096) throw new RotorException($"shards must be in 1..4096, not {Shards}");
        if (Replicas < 1 || Replicas > 16) throw new RotorException($"replicas must be in 1..16, not {Replicas}");
        if (Dimensions < 1 || Dimensions > VectorIndexOptions.MaxDimensions) throw new RotorException($"dimensions must be in 1..{VectorIndexOptions.MaxDimensions}, not {Dimensions}");
        if (!Enum.IsDefined(Code)) throw new RotorException($"unknown code {Code}");
        if (!Enum.IsDefined(Structure)) throw new RotorException($"unknown index structure {Structure}");
        if (RescoreFactor < 0 || RescoreFactor > 1000) throw new RotorException($"rescore factor must be in 0..1000, not {RescoreFactor}");
    }
}

/// <summary>A passage with its place in the whole corpus.</summary>
/// <param name="Ordinal">Position of the passage in the corpus's ingestion order: the ordinal it has in one index of the whole corpus.</param>
/// <param name="Id">Passage id (unique in the corpus).</param>
/// <param name="DocumentId">Id of its document.</param>
/// <param name="Title">Document title.</param>
/// <param name="Section">Section title ("" for the lead).</param>
/// <param name="Text">Passage text.</param>
[GenerateSerializer, Alias("rotor.ClusterPassage")]
public sealed record ClusterPassage(
    [property: Id(0)] long Ordinal,
    [property: Id(1)] string Id,
    [property: Id(2)] string DocumentId,
    [property: Id(3)] string Title,
    [property: Id(4)] string Section,
    [property: Id(5)] string Text)
{
    /// <summary>The Rotor.Rag passage.</summary>
    public Passage ToPassage() => new(Id, DocumentId, Title, Section, Text);

    /// <summary>A Rotor.Rag passage at <paramref name="ordinal"/>.</summary>
    public static ClusterPassage From(long ordinal, Passage p) => new(ordinal, p.Id, p.DocumentId, p.Title, p.Section, p.Text);
}

/// <summary>Passages of one shard with their embeddings, in ordinal order.</summary>
/// <param name="Passages">The passages, ordinals increasing.</param>
/// <param name="Vectors">Their embeddings, (passages, dimensions) row-major.</param>
[GenerateSerializer, Alias("rotor.ShardBatch")]
public sealed record ShardBatch([property: Id(0)] IReadOnlyList<ClusterPassage> Passages, [property: Id(1)] float[] Vectors);

/// <summary>What one shard is asked for a query.</summary>
/// <param name="Text">Query text (BM25).</param>
/// <param name="Vector">Query embedding (dense); null in lexical mode.</param>
/// <param name="Mode">Dense, lexical or hybrid.</param>
/// <param name="Candidates">Hits a ranking the front door wants in the end.</param>
/// <param name="Lexical">The whole collection's BM25 statistics for the query terms (lexical and hybrid).</param>
/// <param name="EfSearch">HNSW beam width (0: the index's).</param>
[GenerateSerializer, Alias("rotor.ShardQuery")]
public sealed record ShardQuery(
    [property: Id(0)] string Text,
    [property: Id(1)] float[]? Vector,
    [property: Id(2)] RetrievalMode Mode,
    [property: Id(3)] int Candidates,
    [property: Id(4)] WireBm25Statistics? Lexical,
    [property: Id(5)] int EfSearch = 0);

/// <summary>A dense candidate of a shard.</summary>
/// <param name="Ordinal">Global ordinal of the passage.</param>
/// <param name="CodeScore">Score by the stored code (the scan's key).</param>
/// <param name="Score">Cosine with the float32 vector when rescoring, else the code score.</param>
[GenerateSerializer, Alias("rotor.DenseCandidate")]
public readonly record struct DenseCandidate([property: Id(0)] long Ordinal, [property: Id(1)] float CodeScore, [property: Id(2)] float Score);

/// <summary>A BM25 hit of a shard.</summary>
/// <param name="Ordinal">Global ordinal of the passage.</param>
/// <param name="Score">BM25 score with the whole collection's statistics.</param>
[GenerateSerializer, Alias("rotor.LexicalCandidate")]
public readonly record struct LexicalCandidate([property: Id(0)] long Ordinal, [property: Id(1)] float Score);

/// <summary>A shard's answer to a <see cref="ShardQuery"/>.</summary>
/// <param name="Dense">Dense candidates by code, best first (the code's top <c>Candidates x RescoreFactor</c> when rescoring).</param>
/// <param name="Lexical">BM25 hits, best first.</param>
[GenerateSerializer, Alias("rotor.ShardHits")]
public sealed record ShardHits([property: Id(0)] DenseCandidate[] Dense, [property: Id(1)] LexicalCandidate[] Lexical);

/// <summary><see cref="Bm25Statistics"/> on the wire.</summary>
[GenerateSerializer, Alias("rotor.Bm25Statistics")]
public sealed record WireBm25Statistics(
    [property: Id(0)] long MaxDocuments,
    [property: Id(1)] long DocumentCount,
    [property: Id(2)] long SumTotalTermFrequency,
    [property: Id(3)] long SumDocumentFrequency,
    [property: Id(4)] string[] Terms,
    [property: Id(5)] long[] DocFreqs,
    [property: Id(6)] long[] TotalTermFreqs)
{
    /// <summary>From Rotor.Rag's statistics.</summary>
    public static WireBm25Statistics From(Bm25Statistics s)
    {
        var terms = s.Terms.Keys.Order(StringComparer.Ordinal).ToArray();
        return new(s.MaxDocuments, s.DocumentCount, s.SumTotalTermFrequency, s.SumDocumentFrequency, terms,
            terms.Select(t => s.Terms[t].DocFreq).ToArray(), terms.Select(t => s.Terms[t].TotalTermFreq).ToArray());
    }

    /// <summary>To Rotor.Rag's statistics.</summary>
    public Bm25Statistics ToStatistics()
    {
        var d = new Dictionary<string, (long, long)>(Terms.Length, StringComparer.Ordinal);
        for (int i = 0; i < Terms.Length; i++) d[Terms[i]] = (DocFreqs[i], TotalTermFreqs[i]);
        return new Bm25Statistics(MaxDocuments, DocumentCount, SumTotalTermFrequency, SumDocumentFrequency, d);
    }
}

/// <summary>A file of a shard replica, for copying it to another silo.</summary>
/// <param name="Path">Path relative to the shard folder, '/' separated.</param>
/// <param name="Bytes">Length.</param>
/// <param name="Sha256">SHA-256, lower-case hex.</param>
[GenerateSerializer, Alias("rotor.ShardFile")]
public sealed record ShardFile([property: Id(0)] string Path, [property: Id(1)] long Bytes, [property: Id(2)] string Sha256);

/// <summary>What a replica holds.</summary>
/// <param name="Shard">Shard number.</param>
/// <param name="Silo">Name of the silo it lives on.</param>
/// <param name="Passages">Passages committed.</param>
/// <param name="Sealed">True when searchable (BM25 built, files listed with their hashes).</param>
/// <param name="Bytes">Bytes on disk.</param>
[GenerateSerializer, Alias("rotor.ReplicaInfo")]
public sealed record ReplicaInfo([property: Id(0)] int Shard, [property: Id(1)] string Silo, [property: Id(2)] long Passages,
    [property: Id(3)] bool Sealed, [property: Id(4)] long Bytes);

/// <summary>The cluster index as the directory keeps it: settings, which silos hold each shard, ingestion progress.</summary>
/// <param name="Version">Raised on every change of the replica sets.</param>
/// <param name="Settings">Shard settings; null before an index is created.</param>
/// <param name="Replicas">Shard number to the names of the silos holding a copy, in the order a query tries them.</param>
/// <param name="Ingest">Ingestion progress.</param>
[GenerateSerializer, Alias("rotor.ClusterLayout")]
public sealed record ClusterLayout(
    [property: Id(0)] long Version,
    [property: Id(1)] ShardSettings? Settings,
    [property: Id(2)] IReadOnlyDictionary<int, string[]> Replicas,
    [property: Id(3)] IngestProgress Ingest);

/// <summary>How far ingestion has gone; committed only once every replica of every shard has the passages on disk.</summary>
/// <param name="Source">What is being ingested (kind and path), empty before any.</param>
/// <param name="Documents">Source documents committed (read, split, embedded, stored on every replica).</param>
/// <param name="Passages">Passages committed; the next passage's ordinal.</param>
/// <param name="Sealed">True when every shard was sealed after the last ingestion: the index is searchable.</param>
[GenerateSerializer, Alias("rotor.IngestProgress")]
public sealed record IngestProgress([property: Id(0)] string Source, [property: Id(1)] long Documents, [property: Id(2)] long Passages, [property: Id(3)] bool Sealed)
{
    /// <summary>Nothing ingested.</summary>
    public static IngestProgress None { get; } = new("", 0, 0, false);
}

/// <summary>A silo as the membership table shows it.</summary>
/// <param name="Name">Silo name (<c>rotor cluster silo --name</c>).</param>
/// <param name="Address">Its address.</param>
/// <param name="Status">Orleans status (Active, Dead, ...).</param>
[GenerateSerializer, Alias("rotor.SiloInfo")]
public sealed record SiloInfo([property: Id(0)] string Name, [property: Id(1)] string Address, [property: Id(2)] string Status);

/// <summary>What <c>rotor cluster status</c> shows.</summary>
/// <param name="Layout">The directory's layout.</param>
/// <param name="Silos">Silos in the membership table.</param>
/// <param name="Replicas">What each live replica reports (unreachable ones are left out).</param>
[GenerateSerializer, Alias("rotor.ClusterStatus")]
public sealed record ClusterStatus([property: Id(0)] ClusterLayout Layout, [property: Id(1)] IReadOnlyList<SiloInfo> Silos, [property: Id(2)] IReadOnlyList<ReplicaInfo> Replicas);
