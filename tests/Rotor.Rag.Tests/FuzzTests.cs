using System.Text;
using Rotor.Rag.Corpus;
using SharpCompress.Compressors;
using SharpCompress.Compressors.BZip2;
using Xunit;

namespace Rotor.Rag.Tests;

/// <summary>
/// Damaged files of every format Rotor.Rag reads (BEIR corpus, queries and judgements, passages files, MediaWiki dumps
/// plain and bzip2): bytes flipped, overwritten, cut or inserted at random offsets, a fixed seed a format. Each read
/// either succeeds or fails with a <see cref="RotorException"/>; never another exception type, a hang or a crash.
/// </summary>
public class FuzzTests
{
    private const int Cases = 300;

    private static byte[] Mutate(byte[] good, Random rng) => Rotor.Testing.FileMutator.Mutate(good, rng);

    private static void Fuzz(string name, byte[] good, int seed, Action<string> read)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-fuzz-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var rng = new Random(seed);
        try
        {
            read(WriteTo(dir, name, good)); // the good file reads
            for (int c = 0; c < Cases; c++)
            {
                string path = WriteTo(dir, $"{c}-{name}", Mutate(good, rng));
                var run = Task.Run(() => read(path));
                // A hang is a failure too (a decoder that loops on damaged data).
                bool finished;
                Exception? error = null;
                try { finished = run.Wait(TimeSpan.FromSeconds(20)); }
                catch (AggregateException a) { finished = true; error = a.InnerException; }
                if (!finished) Assert.Fail($"{name}, seed {seed}, case {c}: no result in 20 s");
                if (error is { } e and not RotorException)
                    Assert.Fail($"{name}, seed {seed}, case {c}: {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
                File.Delete(path);
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static string WriteTo(string dir, string name, byte[] bytes)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static readonly string Dump =
        "<mediawiki xmlns=\"http://www.mediawiki.org/xml/export-0.10/\">\n" + string.Concat(Enumerable.Range(1, 6).Select(i =>
            $"<page><title>Page {i}</title><ns>{(i == 5 ? 4 : 0)}</ns><id>{i}</id>{(i == 6 ? "<redirect title=\"Page 1\" />" : "")}<revision><id>{i}</id>" +
            $"<text>'''Page {i}''' is a [[test]] page with {{{{infobox|x=1}}}} text.\n\n== Part ==\nMore text &amp; a [[link|label]] here.</text></revision></page>\n")) +
        "</mediawiki>\n";

    private static byte[] Bzip2(string text)
    {
        using var ms = new MemoryStream();
        using (var bz = BZip2Stream.Create(ms, CompressionMode.Compress, false, leaveOpen: true)) bz.Write(Encoding.UTF8.GetBytes(text));
        return ms.ToArray();
    }

    [Fact]
    public void DamagedWikiDumpsReadOrFailWithARotorError()
    {
        static void Read(string p) { foreach (var d in WikiDumpReader.ReadArticles(p, threads: 2)) _ = d.Sections.Count; }
        Fuzz("dump.xml.bz2", Bzip2(Dump), 11, Read);
        Fuzz("dump.xml", Encoding.UTF8.GetBytes(Dump), 12, Read);
    }

    [Fact]
    public void DamagedBeirFilesAndPassagesReadOrFailWithARotorError()
    {
        string corpus = string.Concat(Enumerable.Range(1, 8).Select(i => $"{{\"_id\":\"d{i}\",\"title\":\"Title {i}\",\"text\":\"Text number {i} \\u00e9 \\\"quoted\\\".\",\"metadata\":{{}}}}\n"));
        string queries = string.Concat(Enumerable.Range(1, 8).Select(i => $"{{\"_id\":\"q{i}\",\"text\":\"question {i}?\"}}\n"));
        string qrels = "query-id\tcorpus-id\tscore\n" + string.Concat(Enumerable.Range(1, 8).Select(i => $"q{i}\td{i}\t1\n"));
        string passages = string.Concat(Enumerable.Range(1, 8).Select(i => $"{{\"id\":\"d{i}#0\",\"doc\":\"d{i}\",\"title\":\"T{i}\",\"section\":\"\",\"text\":\"text {i}\"}}\n"));
        Fuzz("corpus.jsonl", Encoding.UTF8.GetBytes(corpus), 21, p => _ = BeirReader.ReadCorpus(p).Count());
        Fuzz("queries.jsonl", Encoding.UTF8.GetBytes(queries), 22, p => _ = BeirReader.ReadQueries(p).Count());
        Fuzz("qrels.tsv", Encoding.UTF8.GetBytes(qrels), 23, p => _ = BeirReader.ReadQrels(p).Count);
        Fuzz("passages.jsonl", Encoding.UTF8.GetBytes(passages), 24, p => _ = PassageFile.Read(p).Count());
        using var gz = new MemoryStream();
        using (var z = new System.IO.Compression.GZipStream(gz, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true)) z.Write(Encoding.UTF8.GetBytes(corpus));
        Fuzz("corpus.jsonl.gz", gz.ToArray(), 25, p => _ = BeirReader.ReadCorpus(p).Count());
    }
}
