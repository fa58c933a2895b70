using System.Text.Json;
using Microsoft.Extensions.AI;
using Rotor.Rag.Corpus;
using Rotor.Rag.Search;

namespace Rotor.Rag.Demo;

/// <summary>
/// A small bundled corpus for demos: fifty short passages written from articles of the Wikipedia sample (Anarchism,
/// Albedo, Achilles, Abraham Lincoln, Apollo 11, ...), one JSON object a line in the embedded resource
/// <c>demo-passages.jsonl</c> with fields id, title, section and text.
/// </summary>
public static class DemoCorpus
{
    private const string Resource = "Rotor.Rag.Resources.demo-passages.jsonl";
    private static readonly Lazy<IReadOnlyList<Passage>> s_passages = new(Load);

    /// <summary>The passages, in file order.</summary>
    public static IReadOnlyList<Passage> Passages => s_passages.Value;

    /// <summary>Embeds the passages with <paramref name="embedder"/> and builds an in-memory hybrid retriever over them.</summary>
    public static Task<Retriever> CreateRetrieverAsync(IEmbeddingGenerator<string, Embedding<float>> embedder, CancellationToken cancellationToken = default)
        => Retriever.BuildInMemoryAsync(Passages, embedder, cancellationToken);

    private static IReadOnlyList<Passage> Load()
    {
        using var stream = typeof(DemoCorpus).Assembly.GetManifestResourceStream(Resource)
            ?? throw new RotorException($"embedded resource {Resource} is missing from {typeof(DemoCorpus).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        var passages = new List<Passage>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        string? line;
        int lineNo = 0;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNo++;
            if (line.Length == 0) continue;
            string Field(JsonElement o, string name)
                => o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
                   : throw new RotorException($"{Resource} line {lineNo}: string field \"{name}\" is missing");
            JsonElement obj;
            try { obj = JsonDocument.Parse(line).RootElement; }
            catch (JsonException e) { throw new RotorException($"{Resource} line {lineNo}: not valid JSON: {e.Message}", e); }
            string id = Field(obj, "id"), text = Field(obj, "text");
            if (!ids.Add(id)) throw new RotorException($"{Resource} line {lineNo}: id '{id}' repeats");
            if (text.Length == 0) throw new RotorException($"{Resource} line {lineNo}: text is empty");
            passages.Add(new Passage(id, id, Field(obj, "title"), Field(obj, "section"), text));
        }
        return passages;
    }
}
