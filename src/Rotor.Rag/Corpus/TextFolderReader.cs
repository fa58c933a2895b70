namespace Rotor.Rag.Corpus;

/// <summary>
/// Reads a folder of <c>.txt</c> and <c>.md</c> files (subfolders included, in ordinal path order), one document a
/// file: the id is the path relative to the folder, the title the file name without extension. In Markdown files,
/// '#' headings start sections; text files are one section.
/// </summary>
public static class TextFolderReader
{
    /// <summary>Documents of the folder.</summary>
    /// <exception cref="RotorException">The folder does not exist, or a file is not valid UTF-8.</exception>
    public static IEnumerable<Document> Read(string folder)
    {
        if (!Directory.Exists(folder)) throw new RotorException($"{folder}: folder not found");
        var files = Files(folder, out int broken);
        if (broken > 0) Console.Error.WriteLine($"{folder}: skipped {broken} symbolic link(s) to missing files");
        return files.Select(f => ReadFile(f, Path.GetRelativePath(folder, f).Replace('\\', '/')));
    }

    /// <summary>The .txt and .md files under <paramref name="folder"/>, in ordinal order; symbolic links whose target
    /// is missing are left out and counted in <paramref name="brokenLinks"/>.</summary>
    public static List<string> Files(string folder, out int brokenLinks)
    {
        var files = new List<string>();
        brokenLinks = 0;
        foreach (var f in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            if (!f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) && !f.EndsWith(".md", StringComparison.OrdinalIgnoreCase)) continue;
            if (IsBrokenLink(f)) { brokenLinks++; continue; }
            files.Add(f);
        }
        files.Sort(StringComparer.Ordinal);
        return files;
    }

    // A symbolic link whose final target is missing, or a loop of links. (File.Exists is true for a dangling link on
    // Unix, where .NET falls back to the link itself.)
    private static bool IsBrokenLink(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is null) return false;
        try { return info.ResolveLinkTarget(returnFinalTarget: true) is not { Exists: true }; }
        catch (IOException) { return true; }
    }

    /// <summary>One file as a document.</summary>
    public static Document ReadFile(string path, string id)
    {
        string text;
        try
        {
            text = File.ReadAllText(path, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true));
        }
        catch (System.Text.DecoderFallbackException e)
        {
            throw new RotorException($"{path}: not valid UTF-8 text: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot read: {e.Message}", e);
        }
        string title = Path.GetFileNameWithoutExtension(path);
        text = text.Replace("\r\n", "\n");
        if (!path.EndsWith(".md", StringComparison.OrdinalIgnoreCase)) return new Document(id, title, [new DocumentSection("", Paragraphs(text))]);

        var sections = new List<DocumentSection>();
        string section = "";
        var body = new List<string>();
        void Flush()
        {
            string t = Paragraphs(string.Join('\n', body));
            if (t.Length > 0) sections.Add(new DocumentSection(section, t));
            body.Clear();
        }
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith('#'))
            {
                Flush();
                section = line.TrimStart('#').Trim();
                continue;
            }
            body.Add(line);
        }
        Flush();
        return new Document(id, title, sections);
    }

    // Lines joined into paragraphs: a blank line separates paragraphs, single line breaks are spaces.
    private static string Paragraphs(string text)
        => string.Join('\n', text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => string.Join(' ', p.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)))
            .Where(p => p.Length > 0));
}
