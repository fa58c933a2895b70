using System.IO.Compression;
using System.Text;
using Rotor.Rag.Corpus;
using Xunit;

namespace Rotor.Rag.Tests;

public sealed class CorpusReaderTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void ReadsBeirCorpusPlainAndGzip()
    {
        const string jsonl = "{\"_id\": \"d1\", \"title\": \"First\", \"text\": \"Alpha text.\"}\n\n{\"_id\": \"d2\", \"title\": \"\", \"text\": \"Beta \\u00e9.\", \"metadata\": {}}\n";
        string plain = Path.Combine(_dir, "corpus.jsonl");
        File.WriteAllText(plain, jsonl);
        string gz = Path.Combine(_dir, "corpus.jsonl.gz");
        using (var f = File.Create(gz))
        using (var z = new GZipStream(f, CompressionLevel.Fastest))
            z.Write(Encoding.UTF8.GetBytes(jsonl));
        foreach (var path in new[] { plain, gz })
        {
            var docs = BeirReader.ReadCorpus(path).ToList();
            Assert.Equal(2, docs.Count);
            Assert.Equal(("d1", "First", "Alpha text."), (docs[0].Id, docs[0].Title, docs[0].FullText));
            Assert.Equal("Beta é.", docs[1].FullText);
        }
    }

    [Fact]
    public void BeirErrorsNameFileLineAndField()
    {
        string path = Path.Combine(_dir, "bad.jsonl");
        File.WriteAllText(path, "{\"_id\": \"d1\", \"text\": \"ok\"}\n{\"_id\": \"d2\"}\n");
        var e = Assert.Throws<RotorException>(() => BeirReader.ReadCorpus(path).ToList());
        Assert.Contains(path, e.Message);
        Assert.Contains("line 2", e.Message);
        Assert.Contains("\"text\"", e.Message);

        File.WriteAllText(path, "{\"_id\": \"d1\", \"text\": \"ok\"}\nnot json\n");
        e = Assert.Throws<RotorException>(() => BeirReader.ReadQueries(path).ToList());
        Assert.Contains("line 2", e.Message);

        string qrels = Path.Combine(_dir, "qrels.tsv");
        File.WriteAllText(qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\tx\n");
        e = Assert.Throws<RotorException>(() => BeirReader.ReadQrels(qrels));
        Assert.Contains("line 3", e.Message);
        Assert.Contains("'x'", e.Message);
    }

    [Fact]
    public void ReadsQrels()
    {
        string qrels = Path.Combine(_dir, "qrels.tsv");
        File.WriteAllText(qrels, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq2\td3\t0\n");
        var q = BeirReader.ReadQrels(qrels);
        Assert.Equal(2, q.Count);
        Assert.Equal(2, q["q1"]["d2"]);
        Assert.Equal(0, q["q2"]["d3"]);
    }

    [SciFactFact]
    public void ReadsSciFact()
    {
        var docs = BeirReader.ReadCorpus(Path.Combine(TestPaths.SciFact!, "corpus.jsonl.gz")).ToList();
        Assert.Equal(5183, docs.Count);
        Assert.Equal(5183, docs.Select(d => d.Id).Distinct().Count());
        Assert.Equal(300, BeirReader.ReadQueries(Path.Combine(TestPaths.SciFact!, "queries_test.jsonl")).Count());
        var qrels = BeirReader.ReadQrels(Path.Combine(TestPaths.SciFact!, "qrels", "test.tsv"));
        Assert.Equal(339, qrels.Values.Sum(d => d.Count));
        Assert.Equal(300, qrels.Count);
    }

    [Fact]
    public void ReadsTextFolder()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "sub"));
        File.WriteAllText(Path.Combine(_dir, "b-notes.txt"), "First line\nsame paragraph.\n\nSecond paragraph.\n");
        File.WriteAllText(Path.Combine(_dir, "sub", "a-guide.md"), "Intro text.\n\n# Setup\nInstall it.\n\n## Use\nRun it.\n");
        File.WriteAllText(Path.Combine(_dir, "image.png"), "not text");
        var docs = TextFolderReader.Read(_dir).ToList();
        Assert.Equal(["b-notes.txt", "sub/a-guide.md"], docs.Select(d => d.Id));
        Assert.Equal("b-notes", docs[0].Title);
        Assert.Equal("First line same paragraph.\nSecond paragraph.", docs[0].FullText);
        Assert.Equal("a-guide", docs[1].Title);
        Assert.Equal([("", "Intro text."), ("Setup", "Install it."), ("Use", "Run it.")], docs[1].Sections.Select(s => (s.Title, s.Text)));
    }

    [Fact]
    public void TextFolderErrorsNameThePath()
    {
        string bad = Path.Combine(_dir, "bad.txt");
        File.WriteAllBytes(bad, [0x41, 0xff, 0xfe, 0x42]);
        var e = Assert.Throws<RotorException>(() => TextFolderReader.Read(_dir).ToList());
        Assert.Contains(bad, e.Message);
        var missing = Path.Combine(_dir, "nope");
        Assert.Contains(missing, Assert.Throws<RotorException>(() => TextFolderReader.Read(missing)).Message);
    }
}

public sealed class PassageFileTests
{
    [Fact]
    public void RoundTripsAndChecksLines()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string path = Path.Combine(dir, "p.jsonl");
            Passage[] passages = [new("1#0", "1", "Tïtle \"q\"", "", "Text one.\nLine two."), new("1#1", "1", "Tïtle \"q\"", "Sec", "Text two.")];
            Assert.Equal(2, PassageFile.Write(path, passages));
            Assert.Equal(passages, PassageFile.Read(path).ToArray());
            Assert.Empty(Directory.GetFiles(dir, "*.tmp"));

            File.AppendAllText(path, "{\"id\":\"1#0\",\"doc\":\"1\",\"title\":\"x\",\"section\":\"\",\"text\":\"dup\"}\n");
            var e = Assert.Throws<RotorException>(() => PassageFile.Read(path).ToList());
            Assert.Contains("line 3", e.Message);
            Assert.Contains("repeats", e.Message);

            File.WriteAllText(path, "{\"id\":\"a\",\"doc\":\"1\"}\n");
            e = Assert.Throws<RotorException>(() => PassageFile.Read(path).ToList());
            Assert.Contains("line 1", e.Message);
            Assert.Contains(path, e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
