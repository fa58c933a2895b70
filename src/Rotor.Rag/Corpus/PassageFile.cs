using System.Text;
using System.Text.Json;

namespace Rotor.Rag.Corpus;

/// <summary>
/// Passages as JSON lines, one <c>{"id","doc","title","section","text"}</c> object a line: the hand-over format from
/// ingestion (Wikipedia, text folders) to indexing. Written atomically; every line checked on read.
/// </summary>
public static class PassageFile
{
    /// <summary>Writes <paramref name="passages"/> to <paramref name="path"/> atomically; returns how many were written.</summary>
    /// <param name="path">Target file.</param>
    /// <param name="passages">Passages, streamed.</param>
    /// <param name="progress">Called every 10,000 passages with the count so far.</param>
    public static int Write(string path, IEnumerable<Passage> passages, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(passages);
        int count = 0;
        AtomicFile.Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
            foreach (var p in passages)
            {
                writer.Write(JsonSerializer.Serialize(new Line(p.Id, p.DocumentId, p.Title, p.Section, p.Text), LineContext.Default.Line));
                writer.Write('\n');
                if (++count % 10_000 == 0) progress?.Invoke(count);
            }
        });
        return count;
    }

    /// <summary>Reads passages written by <see cref="Write"/>, streaming.</summary>
    /// <exception cref="RotorException">A line is not a passage object or an id repeats; the message names file and line.</exception>
    public static IEnumerable<Passage> Read(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: passage file not found");
        return ReadCore(path);
    }

    private static IEnumerable<Passage> ReadCore(string path)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (lineNo, text) in TextLines.Read(path))
        {
            if (text.Length == 0) continue;
            Line? line;
            try { line = JsonSerializer.Deserialize(text, LineContext.Default.Line); }
            catch (JsonException e) { throw new RotorException($"{path}: line {lineNo}: not a passage object: {e.Message}", e); }
            if (line is null || line.Id is null || line.Doc is null || line.Title is null || line.Section is null || line.Text is null)
                throw new RotorException($"{path}: line {lineNo}: a passage needs string fields id, doc, title, section and text");
            if (!ids.Add(line.Id)) throw new RotorException($"{path}: line {lineNo}: passage id '{line.Id}' repeats");
            yield return new Passage(line.Id, line.Doc, line.Title, line.Section, line.Text);
        }
    }

    internal sealed record Line(
        [property: System.Text.Json.Serialization.JsonPropertyName("id")] string? Id,
        [property: System.Text.Json.Serialization.JsonPropertyName("doc")] string? Doc,
        [property: System.Text.Json.Serialization.JsonPropertyName("title")] string? Title,
        [property: System.Text.Json.Serialization.JsonPropertyName("section")] string? Section,
        [property: System.Text.Json.Serialization.JsonPropertyName("text")] string? Text);
}

[System.Text.Json.Serialization.JsonSerializable(typeof(PassageFile.Line))]
internal sealed partial class LineContext : System.Text.Json.Serialization.JsonSerializerContext;
