using System.Text;
using Rotor.Rag.Corpus;
using Xunit;
using Xunit.Abstractions;

namespace Rotor.Rag.Tests;

public sealed class WikiTextTests
{
    [Fact]
    public void RemovesNestedTemplatesRefsCommentsAndTables()
    {
        const string wiki = """
            {{Infobox person|name=X|birth={{birth date|1900|1|1}}}}
            '''Ada''' was a {{efn|a note on [[France|French]] {{nowrap|usage}}}}writer<ref name="a">{{cite book|title=T}}</ref> of [[novel]]s.<!-- hidden
            comment --> She lived in [[Paris|the capital]].<ref>Plain ref.</ref><ref name="b"/>
            {| class="wikitable"
            |-
            ! Year !! Work
            |-
            | 1920 || {{nowrap|First}}
            |}
            After the table.
            """;
        var sections = WikiText.ToSections(wiki);
        var text = Assert.Single(sections).Text;
        Assert.Equal("Ada was a writer of novels. She lived in the capital.\nAfter the table.", text);
    }

    [Fact]
    public void DropsFilesCategoriesAndInterlanguageLinksKeepsLabels()
    {
        const string wiki = "[[File:Map.png|thumb|A map of [[Europe]] in 1900]]Text with [[link]] and [[target|label]] and [[:Category:Foo|a category page]].\n" +
                            "[[Image:x.jpg]] [http://example.org Example site] and [http://bare.example].\n[[Category:Writers]]\n[[de:Ada]]";
        var text = Assert.Single(WikiText.ToSections(wiki)).Text;
        // Lines without a blank line between them are one paragraph in wikitext.
        Assert.Equal("Text with link and label and a category page. Example site and.", text);
    }

    [Fact]
    public void HeadingsBecomeSectionsAndReferenceSectionsAreDropped()
    {
        const string wiki = "Lead sentence here.\n\n== History ==\nOld times.\n=== Early ''years'' ===\n* First item\n# Second item\n== References ==\n{{reflist}}\n* A citation\n== External links ==\n* [http://x.org X]";
        var sections = WikiText.ToSections(wiki);
        Assert.Equal(["", "History", "Early years"], sections.Select(s => s.Title));
        Assert.Equal("First item Second item", sections[2].Text);
    }

    [Fact]
    public void DecodesEntitiesAndRemovesTags()
    {
        var text = Assert.Single(WikiText.ToSections("5&nbsp;km &ndash; a <small>small</small> <span style=\"x\">note</span><br/>end &amp; more <math>x^2</math>done")).Text;
        Assert.Equal("5 km – a small note end & more done", text);
    }

    [Fact]
    public void KeepsProseTemplatesAndTidiesWhatRemovedOnesLeave()
    {
        const string wiki = "'''Achilles''' ({{IPAc-en|ə|ˈ|k|ɪ|l|iː|z}}; {{lang-grc|Ἀχιλλεύς}}, ''Akhilleus'') ran {{convert|5|km}} " +
                            "and {{convert|3|-|4|mi|km}}, {{nowrap|non&nbsp;stop}}, reading ''{{lang|es|La Voz de la Mujer}}'' ({{IPA|x}},,).\n(;, {{IPA|y}}; , z, ;) (x ; , y) stays.";
        var text = Assert.Single(WikiText.ToSections(wiki)).Text;
        Assert.Equal("Achilles (Ἀχιλλεύς, Akhilleus) ran 5 km and 3–4 mi, non stop, reading La Voz de la Mujer. (z) (x;, y) stays.", text);
    }

    [Fact]
    public void UnclosedMarkupDoesNotSwallowOrThrow()
    {
        var text = Assert.Single(WikiText.ToSections("Start {{unclosed template and [[unclosed link but text goes on.")).Text;
        Assert.Contains("text goes on", text);
        Assert.DoesNotContain("{{", text);
    }
}

public sealed class WikiDumpTests(ITestOutputHelper output)
{
    // The sample's articles, read once for the tests that only look at them.
    private static readonly Lazy<List<Document>> s_articles = new(() => WikiDumpReader.ReadArticles(TestPaths.WikiSample!).ToList());

    private static readonly string[] s_markup = ["{{", "}}", "[[", "]]", "<ref", "</ref", "{|", "|}", "'''", "<!--", "-->", "&nbsp;", "&amp;", "thumb|", "[[Category:", "<br", "<div"];

    [WikiSampleFact]
    public void CountsPagesRedirectsAndArticles()
    {
        var stats = new WikiDumpStats();
        var pages = WikiDumpReader.ReadPages(TestPaths.WikiSample!, stats).ToList();
        Assert.Equal(206, pages.Count);
        Assert.Equal(206, stats.Pages);
        Assert.Equal(100, stats.Redirects);
        Assert.Equal(106, stats.Articles);
        Assert.InRange(stats.BytesRead, 1, stats.TotalBytes);
        Assert.Equal(new FileInfo(TestPaths.WikiSample!).Length, stats.TotalBytes);
        Assert.Equal(205, pages.Count(p => p.Namespace == 0));
        Assert.Equal(106, pages.Count(p => p.IsArticle));
        var first = pages[0];
        Assert.Equal("AccessibleComputing", first.Title);
        Assert.Equal(10, first.Id);
        Assert.Equal("Computer accessibility", first.RedirectTo);
        var anarchism = pages.Single(p => p.Title == "Anarchism");
        Assert.Equal(12, anarchism.Id);
        Assert.Null(anarchism.RedirectTo);
        Assert.True(anarchism.Wikitext.Length > 50_000);
    }

    [WikiSampleFact]
    public void ArticlesComeOutAsCleanSectionedText()
    {
        var docs = s_articles.Value;
        Assert.Equal(106, docs.Count);
        var anarchism = docs.Single(d => d.Title == "Anarchism");
        Assert.StartsWith("Anarchism is a political philosophy", anarchism.Sections[0].Text);
        Assert.Equal("", anarchism.Sections[0].Title);
        Assert.Contains(anarchism.Sections, s => s.Title == "Etymology and terminology");
        Assert.DoesNotContain(anarchism.Sections, s => s.Title is "References" or "External links" or "See also");
        long words = 0;
        foreach (var d in docs)
            foreach (var s in d.Sections)
            {
                words += s.Text.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries).Length;
                foreach (var m in s_markup)
                    Assert.False(s.Text.Contains(m, StringComparison.OrdinalIgnoreCase), $"'{m}' left in {d.Title} / {s.Title}: ...{Around(s.Text, m)}...");
                Assert.False(s.Title.Contains("==") || s.Title.Contains("[["), $"heading markup left in section title '{s.Title}' of {d.Title}");
            }
        output.WriteLine($"106 articles, {words:N0} words of clean text");
        Assert.InRange(words, 300_000, 711_000); // the README counts ~711k words of wikitext, markup included
    }

    [WikiSampleFact]
    public void ParallelCleaningKeepsDumpOrderAndText()
    {
        var serial = WikiDumpReader.ReadArticles(TestPaths.WikiSample!, threads: 1).ToList();
        var parallel = WikiDumpReader.ReadArticles(TestPaths.WikiSample!, threads: 3).ToList();
        Assert.Equal(serial.Select(d => d.Id), parallel.Select(d => d.Id));
        Assert.Equal(serial.Select(d => d.FullText), parallel.Select(d => d.FullText));
        Assert.Equal(serial.Select(d => d.Id), s_articles.Value.Select(d => d.Id));
    }

    [WikiSampleFact]
    public void PassagesAreAboutAHundredWordsWithTitles()
    {
        var splitter = new PassageSplitter(100);
        var passages = splitter.Split(s_articles.Value).ToList();
        var counts = passages.Select(p => p.Text.Split(' ').Length).ToList();
        output.WriteLine($"{passages.Count} passages, words mean {counts.Average():F1}, min {counts.Min()}, max {counts.Max()}");
        Assert.True(passages.Count > 3000, $"{passages.Count} passages");
        Assert.InRange(counts.Average(), 85, 115);
        Assert.All(counts, c => Assert.InRange(c, splitter.MinWords, splitter.MaxWords));
        Assert.Equal(passages.Count, passages.Select(p => p.Id).Distinct().Count());
        Assert.All(passages, p => Assert.False(string.IsNullOrWhiteSpace(p.Title)));
        // Most passages end a sentence.
        double ends = passages.Count(p => p.Text.TrimEnd('"', '\'', ')', '”').EndsWith('.') || p.Text.EndsWith('?') || p.Text.EndsWith('!')) / (double)passages.Count;
        Assert.True(ends > 0.75, $"only {ends:P0} of passages end with sentence punctuation");
        var lead = passages.First(p => p.Title == "Albedo");
        Assert.Equal("", lead.Section);
        Assert.Contains("Albedo", IndexText.Of(lead));
    }

    [WikiSampleFact]
    public void PlainXmlReadsTheSameAsBzip2()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string xml = Path.Combine(dir, "sample.xml");
            using (var src = WikiDumpReader.Open(TestPaths.WikiSample!))
            using (var dst = File.Create(xml)) src.CopyTo(dst);
            var a = WikiDumpReader.ReadPages(TestPaths.WikiSample!).Select(p => (p.Id, p.Title, p.Wikitext.Length)).ToList();
            var b = WikiDumpReader.ReadPages(xml).Select(p => (p.Id, p.Title, p.Wikitext.Length)).ToList();
            Assert.Equal(a, b);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadDumpsFailWithTheFileName()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string notWiki = Path.Combine(dir, "other.xml");
            File.WriteAllText(notWiki, "<root><page/></root>");
            var e1 = Assert.Throws<RotorException>(() => WikiDumpReader.ReadPages(notWiki).ToList());
            Assert.Contains(notWiki, e1.Message);
            Assert.Contains("<mediawiki>", e1.Message);

            string broken = Path.Combine(dir, "broken.xml");
            File.WriteAllText(broken, "<mediawiki>\n<page><title>A</title><ns>0</ns><id>1</id>\n<revision><text>x</text></revision></page>\n<page><title>B</ti");
            var e2 = Assert.Throws<RotorException>(() => WikiDumpReader.ReadPages(broken).ToList());
            Assert.Contains(broken, e2.Message);
            Assert.Contains("line", e2.Message);

            string badId = Path.Combine(dir, "badid.xml");
            File.WriteAllText(badId, "<mediawiki><page><title>A</title><ns>0</ns><id>x1</id><revision><text>x</text></revision></page></mediawiki>");
            var e3 = Assert.Throws<RotorException>(() => WikiDumpReader.ReadPages(badId).ToList());
            Assert.Contains("<id>", e3.Message);

            string fakeBz2 = Path.Combine(dir, "fake.xml.bz2");
            File.WriteAllText(fakeBz2, "<mediawiki/>");
            var e4 = Assert.Throws<RotorException>(() => WikiDumpReader.ReadPages(fakeBz2).ToList());
            Assert.Contains("bzip2", e4.Message);

            Assert.Throws<RotorException>(() => WikiDumpReader.ReadPages(Path.Combine(dir, "missing.xml")));
        }
        finally { Directory.Delete(dir, true); }
    }

    private static string Around(string text, string m)
    {
        int i = text.IndexOf(m, StringComparison.OrdinalIgnoreCase);
        return text.Substring(Math.Max(0, i - 60), Math.Min(text.Length - Math.Max(0, i - 60), 140));
    }
}

public sealed class PassageSplitterTests
{
    [Fact]
    public void SentencesRespectAbbreviationsAndInitials()
    {
        var s = PassageSplitter.Sentences("Dr. Smith met J. R. Tolkien in 1950. They talked, e.g. about Mr. Brown's work! Was it fun? \"Yes.\" The end").ToList();
        Assert.Equal(["Dr. Smith met J. R. Tolkien in 1950.", "They talked, e.g. about Mr. Brown's work!", "Was it fun?", "\"Yes.\"", "The end"], s);
    }

    [Fact]
    public void PassagesKeepEveryWordInOrderAndStayUnderMax()
    {
        var r = new Random(3);
        var sb = new StringBuilder();
        for (int i = 0; i < 120; i++)
        {
            int n = r.Next(3, 40);
            sb.Append("Word").Append(i);
            for (int w = 1; w < n; w++) sb.Append(" w").Append(i).Append('_').Append(w);
            sb.Append(". ");
            if (i % 17 == 16) sb.Append('\n');
        }
        sb.Append(string.Join(' ', Enumerable.Range(0, 400).Select(i => "long" + i))).Append('.'); // one 400-word sentence
        var splitter = new PassageSplitter(100, minWords: 1);
        string text = sb.ToString();
        var passages = splitter.SplitText(text);
        Assert.Equal(text.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries), passages.SelectMany(p => p.Split(' ')));
        Assert.All(passages, p => Assert.InRange(p.Split(' ').Length, 1, splitter.MaxWords));
        // Every passage but the parts of the 400-word sentence ends at a sentence end.
        Assert.All(passages.Where(p => !p.Contains("long")), p => Assert.EndsWith(".", p));
        Assert.True(passages.Count(p => p.Split(' ').Length >= 100) >= passages.Count - 3);
    }

    [Fact]
    public void SectionsAreNotCrossedAndIdsAreNumbered()
    {
        var doc = new Document("7", "T", [new DocumentSection("", "One short lead sentence here."), new DocumentSection("S", "Another section sentence here.")]);
        var passages = new PassageSplitter().Split(doc).ToList();
        Assert.Equal(2, passages.Count);
        Assert.Equal(("7#0", ""), (passages[0].Id, passages[0].Section));
        Assert.Equal(("7#1", "S"), (passages[1].Id, passages[1].Section));
        Assert.Equal("T: S. Another section sentence here.", IndexText.Of(passages[1]));
    }
}
