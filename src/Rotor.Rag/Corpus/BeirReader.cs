using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace Rotor.Rag.Corpus;

/// <summary>A query of a retrieval benchmark.</summary>
/// <param name="Id">Query id.</param>
/// <param name="Text">Query text.</param>
public sealed record Query(string Id, string Text);

/// <summary>
/// Readers for BEIR-format files: a corpus or queries as JSON lines (<c>{"_id","title","text"}</c>, plain or
/// <c>.gz</c>) and relevance judgements as TSV (<c>query-id corpus-id score</c> with a header line).
/// </summary>
public static class BeirReader
{
    /// <summary>Documents of a BEIR corpus file, one untitled section each (the abstract or passage as is).</summary>
    /// <exception cref="RotorException">A line is not a JSON object with a string "_id" and "text"; the message names file and line.</exception>
    public static IEnumerable<Document> ReadCorpus(string path)
    {
        foreach (var (line, obj) in ReadJsonLines(path))
        {
            string id = RequiredString(obj, "_id", path, line);
            string text = RequiredString(obj, "text", path, line);
            string title = OptionalString(obj, "title", path, line) ?? "";
            yield return Document.Plain(id, title, text);
        }
    }

    /// <summary>Queries of a BEIR queries file.</summary>
    public static IEnumerable<Query> ReadQueries(string path)
    {
        foreach (var (line, obj) in ReadJsonLines(path))
            yield return new Query(RequiredString(obj, "_id", path, line), RequiredString(obj, "text", path, line));
    }

    /// <summary>Relevance judgements: query id to (document id to grade). Rows with grade 0 are kept (they count as not relevant).</summary>
    /// <exception cref="RotorException">A row does not have three tab-separated fields with an integer grade.</exception>
    public static Dictionary<string, Dictionary<string, int>> ReadQrels(string path)
    {
        var qrels = new Dictionary<string, Dictionary<string, int>>(StringComparer.Ordinal);
        if (!File.Exists(path)) throw new RotorException($"{path}: file not found");
        foreach (var (lineNo, line) in TextLines.Read(path))
        {
            if (line.Length == 0) continue;
            var f = line.Split('\t');
            if (lineNo == 1 && f.Length >= 1 && f[0] == "query-id") continue;
            if (f.Length != 3) throw new RotorException($"{path}: line {lineNo}: expected 3 tab-separated fields (query-id, corpus-id, score), got {f.Length}");
            if (!int.TryParse(f[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out int grade))
                throw new RotorException($"{path}: line {lineNo}: score '{f[2]}' is not an integer");
            if (!qrels.TryGetValue(f[0], out var docs)) qrels[f[0]] = docs = new Dictionary<string, int>(StringComparer.Ordinal);
            docs[f[1]] = grade;
        }
        return qrels;
    }

    /// <summary>Opens a text file, gunzipping it when it is gzip (magic bytes 1f 8b).</summary>
    public static StreamReader OpenText(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: file not found");
        return TextLines.Open(path);
    }

    private static IEnumerable<(int Line, JsonElement Obj)> ReadJsonLines(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: file not found");
        foreach (var (lineNo, line) in TextLines.Read(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement obj;
            try
            {
                using var doc = JsonDocument.Parse(line);
                obj = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new RotorException($"{path}: line {lineNo}: not valid JSON: {e.Message}", e);
            }
            if (obj.ValueKind != JsonValueKind.Object) throw new RotorException($"{path}: line {lineNo}: expected a JSON object, got {obj.ValueKind}");
            yield return (lineNo, obj);
        }
    }

    private static string RequiredString(JsonElement obj, string field, string path, int line)
        => OptionalString(obj, field, path, line) ?? throw new RotorException($"{path}: line {line}: field \"{field}\" is missing");

    private static string? OptionalString(JsonElement obj, string field, string path, int line)
    {
        if (!obj.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString()!,
            JsonValueKind.Number => v.GetRawText(), // some BEIR sets have numeric ids
            _ => throw new RotorException($"{path}: line {line}: field \"{field}\" is {v.ValueKind}, expected a string"),
        };
    }
}
