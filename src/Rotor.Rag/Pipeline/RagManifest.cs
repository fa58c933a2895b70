using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Rotor.Index;

namespace Rotor.Rag.Pipeline;

/// <summary>Size and SHA-256 of one file of a RAG index directory.</summary>
/// <param name="Bytes">File length.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of the content.</param>
public sealed record FileStamp(long Bytes, string Sha256)
{
    /// <summary>Stamps a file.</summary>
    public static FileStamp Of(string path) => new(new FileInfo(path).Length, Sha256Of(path));

    /// <summary>Lower-case hex SHA-256 of a file, reporting bytes hashed after each 8 MiB.</summary>
    public static string Sha256Of(string path, Action<long>? progress = null)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[8 << 20];
        long done = 0;
        for (int n; (n = s.Read(buffer)) > 0;)
        {
            h.AppendData(buffer, 0, n);
            done += n;
            progress?.Invoke(done);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }
}

/// <summary>
/// <c>manifest.json</c> of a RAG index directory (docs/PIPELINE.md): what the index holds and how it was made. It is
/// written last, atomically, so a directory with a manifest is a complete index; opening checks every field and the
/// files against it.
/// </summary>
public sealed record RagManifest
{
    /// <summary>Value of the <c>format</c> field.</summary>
    public const string FormatName = "rotor-rag-index";

    /// <summary>The version this code reads and writes.</summary>
    public const int CurrentVersion = 1;

    /// <summary>Embedding model name (e.g. all-MiniLM-L6-v2).</summary>
    public required string ModelName { get; init; }
    /// <summary>SHA-256 of the ONNX model, hex.</summary>
    public required string ModelSha256 { get; init; }
    /// <summary>Embedding dimensions.</summary>
    public required int Dimensions { get; init; }
    /// <summary>Tokens a passage was cut to when embedded.</summary>
    public required int MaxTokens { get; init; }
    /// <summary>Storage code of the dense vectors.</summary>
    public required CodeKind Code { get; init; }
    /// <summary>Default rescoring factor of dense searches (0: none).</summary>
    public required int RescoreFactor { get; init; }
    /// <summary>Source kind: wiki, docs or jsonl.</summary>
    public required string SourceKind { get; init; }
    /// <summary>Source path as given.</summary>
    public required string SourcePath { get; init; }
    /// <summary>Documents read from the source that were indexed (after skips).</summary>
    public required long Documents { get; init; }
    /// <summary>Passages indexed.</summary>
    public required int Passages { get; init; }
    /// <summary>What was skipped, by reason.</summary>
    public required IReadOnlyDictionary<string, long> Skipped { get; init; }
    /// <summary>passages.jsonl stamp.</summary>
    public required FileStamp PassagesFile { get; init; }
    /// <summary>vectors.rix stamp.</summary>
    public required FileStamp VectorsFile { get; init; }
    /// <summary>BM25 folder: file count.</summary>
    public required int Bm25Files { get; init; }
    /// <summary>BM25 folder: total bytes.</summary>
    public required long Bm25Bytes { get; init; }
    /// <summary>When the build finished (UTC, ISO 8601).</summary>
    public required string CreatedUtc { get; init; }

    /// <summary>The manifest as indented JSON.</summary>
    public string ToJson()
    {
        var skipped = new JsonObject();
        foreach (var (k, v) in Skipped) skipped[k] = v;
        var o = new JsonObject
        {
            ["format"] = FormatName,
            ["version"] = CurrentVersion,
            ["model"] = new JsonObject { ["name"] = ModelName, ["sha256"] = ModelSha256, ["dimensions"] = Dimensions, ["maxTokens"] = MaxTokens },
            ["vectors"] = new JsonObject { ["code"] = Code.ToString(), ["rescoreFactor"] = RescoreFactor, ["metric"] = "Cosine" },
            ["source"] = new JsonObject { ["kind"] = SourceKind, ["path"] = SourcePath },
            ["counts"] = new JsonObject { ["documents"] = Documents, ["passages"] = Passages, ["skipped"] = skipped },
            ["files"] = new JsonObject
            {
                ["passages.jsonl"] = new JsonObject { ["bytes"] = PassagesFile.Bytes, ["sha256"] = PassagesFile.Sha256 },
                ["vectors.rix"] = new JsonObject { ["bytes"] = VectorsFile.Bytes, ["sha256"] = VectorsFile.Sha256 },
                ["bm25"] = new JsonObject { ["files"] = Bm25Files, ["bytes"] = Bm25Bytes },
            },
            ["createdUtc"] = CreatedUtc,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>Reads and checks a manifest file.</summary>
    /// <exception cref="RotorException">Missing, not JSON, another format or version, or a field missing or of the wrong type (named).</exception>
    public static RagManifest Load(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: manifest not found");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new RotorException($"{path}: not valid JSON: {e.Message}", e); }
        if (root is not JsonObject o) throw new RotorException($"{path}: expected a JSON object");
        string format = Str(o, "format", path);
        if (format != FormatName) throw new RotorException($"{path}: format is '{format}', expected '{FormatName}'");
        long version = Num(o, "version", path);
        if (version != CurrentVersion) throw new RotorException($"{path}: version {version} is not supported (this build reads version {CurrentVersion})");
        var model = Obj(o, "model", path);
        var vectors = Obj(o, "vectors", path);
        var source = Obj(o, "source", path);
        var counts = Obj(o, "counts", path);
        var files = Obj(o, "files", path);
        string codeText = Str(vectors, "vectors.code", path, "code");
        if (!Enum.TryParse<CodeKind>(codeText, ignoreCase: false, out var code) || !Enum.IsDefined(code))
            throw new RotorException($"{path}: vectors.code is '{codeText}', expected one of {string.Join(", ", Enum.GetNames<CodeKind>())}");
        string metric = Str(vectors, "vectors.metric", path, "metric");
        if (metric != "Cosine") throw new RotorException($"{path}: vectors.metric is '{metric}', expected 'Cosine'");
        var skippedNode = Obj(counts, "counts.skipped", path, "skipped");
        var skipped = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (k, _) in skippedNode) skipped[k] = Num(skippedNode, $"counts.skipped.{k}", path, k);
        var pf = Obj(files, "files.passages.jsonl", path, "passages.jsonl");
        var vf = Obj(files, "files.vectors.rix", path, "vectors.rix");
        var bf = Obj(files, "files.bm25", path, "bm25");
        var m = new RagManifest
        {
            ModelName = Str(model, "model.name", path, "name"),
            ModelSha256 = Str(model, "model.sha256", path, "sha256"),
            Dimensions = (int)Num(model, "model.dimensions", path, "dimensions", 1, 65536),
            MaxTokens = (int)Num(model, "model.maxTokens", path, "maxTokens", 2, 1 << 20),
            Code = code,
            RescoreFactor = (int)Num(vectors, "vectors.rescoreFactor", path, "rescoreFactor", 0, 1000),
            SourceKind = Str(source, "source.kind", path, "kind"),
            SourcePath = Str(source, "source.path", path, "path"),
            Documents = Num(counts, "counts.documents", path, "documents", 0),
            Passages = (int)Num(counts, "counts.passages", path, "passages", 0, int.MaxValue),
            Skipped = skipped,
            PassagesFile = new FileStamp(Num(pf, "files.passages.jsonl.bytes", path, "bytes", 0), Str(pf, "files.passages.jsonl.sha256", path, "sha256")),
            VectorsFile = new FileStamp(Num(vf, "files.vectors.rix.bytes", path, "bytes", 0), Str(vf, "files.vectors.rix.sha256", path, "sha256")),
            Bm25Files = (int)Num(bf, "files.bm25.files", path, "files", 0, int.MaxValue),
            Bm25Bytes = Num(bf, "files.bm25.bytes", path, "bytes", 0),
            CreatedUtc = Str(o, "createdUtc", path),
        };
        return m;
    }

    private static JsonObject Obj(JsonObject o, string name, string path, string? key = null)
        => o[key ?? name] as JsonObject ?? throw new RotorException($"{path}: field '{name}' is missing or not an object");

    private static string Str(JsonObject o, string name, string path, string? key = null)
    {
        var n = o[key ?? name];
        if (n is JsonValue v && v.TryGetValue(out string? s) && s is not null) return s;
        throw new RotorException($"{path}: field '{name}' is missing or not a string");
    }

    private static long Num(JsonObject o, string name, string path, string? key = null, long min = long.MinValue, long max = long.MaxValue)
    {
        var n = o[key ?? name];
        if (n is JsonValue v && v.TryGetValue(out long x))
        {
            if (x < min || x > max) throw new RotorException($"{path}: field '{name}' is {x.ToString(CultureInfo.InvariantCulture)}, expected {min}..{max}");
            return x;
        }
        throw new RotorException($"{path}: field '{name}' is missing or not an integer");
    }
}
