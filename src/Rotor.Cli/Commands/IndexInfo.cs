using System.Globalization;
using Rotor.Index;
using Rotor.Rag.Pipeline;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor info INDEX</c>: an index file's or RAG index folder's settings and the memory it will take, from
/// its header and manifest alone (<see cref="IndexMemory"/>): what is mapped, what open reads, what a query touches.</summary>
internal static class IndexInfo
{
    private static string Size(long b) => b >= 1L << 30 ? (b / 1073741824.0).ToString("F2", CultureInfo.InvariantCulture) + " GiB"
        : b >= 1 << 20 ? (b / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB"
        : (b / 1024.0).ToString("F1", CultureInfo.InvariantCulture) + " KiB";

    /// <summary>Whether <paramref name="path"/> is a file that starts with the index magic.</summary>
    public static bool IsIndexFile(string path)
    {
        if (!System.IO.File.Exists(path)) return false;
        try
        {
            using var f = System.IO.File.OpenRead(path);
            Span<byte> m = stackalloc byte[8];
            return f.Read(m) == 8 && m.SequenceEqual("ROTORIDX"u8);
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    public static int File(string path)
    {
        Print(IndexMemory.Of(path), rescoreFactor: 0);
        return 0;
    }

    public static int Folder(string dir)
    {
        var m = RagManifest.Load(Path.Combine(dir, RagIndex.ManifestFile));
        string passages = Path.Combine(dir, RagIndex.PassagesFile), bm25 = Path.Combine(dir, RagIndex.Bm25Folder);
        long passageBytes = System.IO.File.Exists(passages) ? new FileInfo(passages).Length : 0;
        var (bm25Files, bm25Bytes) = Directory.Exists(bm25) ? RagIndex.FolderSize(bm25) : (0, 0L);
        Console.WriteLine($"rag index    {dir}: {m.Passages:N0} passages of {m.Documents:N0} documents, {m.ModelName} ({m.Dimensions} dims), {m.Code} codes, rescore x{m.RescoreFactor}");
        Console.WriteLine($"passages     {RagIndex.PassagesFile}: {Size(passageBytes)}, read whole at open (held as .NET strings: about twice that)");
        Console.WriteLine($"bm25         {bm25Files} Lucene files, {Size(bm25Bytes)}, mapped; open reads every document's stored ordinal, a query the postings of its terms");
        Print(IndexMemory.Of(Path.Combine(dir, RagIndex.VectorsFile)), m.RescoreFactor);
        return 0;
    }

    private static void Print(IndexMemory x, int rescoreFactor)
    {
        var o = x.Options;
        Console.WriteLine($"index        {x.Path} ({Size(x.FileBytes)}): {x.Live:N0} records ({x.Slots - x.Live:N0} deleted slots), {o.Dimensions} dims, {o.Code} codes, {o.Metric}, {o.Structure}" +
                          (o.Structure == IndexStructure.Hnsw ? $" (M {o.Hnsw.M}, efSearch {o.Hnsw.EfSearch})" : ""));
        Console.WriteLine($"sections     codes {Size(x.CodeBytes)}; float32 vectors {(o.KeepFullPrecision && o.Code != CodeKind.Float32 ? Size(x.FullBytes) : "not kept")}; read at open {Size(x.SmallBytes)} (scales, norms, keys, fields, deletions, chunk checksums{(x.GraphBytes > 0 ? $", graph {Size(x.GraphBytes)}" : "")})");
        Console.WriteLine(x.Mapped
            ? $"open         maps {Size(x.MappedBytes)} (address space; pages become resident as queries read them, each 4 KiB checked on first use); reads and keeps {Size(x.ReadAtOpenBytes)}"
            : $"open         copies the whole file into memory (under 64 MiB): reads and keeps {Size(x.ReadAtOpenBytes)}");
        int k = 10, candidates = rescoreFactor > 1 ? k * rescoreFactor : 0;
        string graph = o.Structure == IndexStructure.Hnsw ? $"graph search about {Size(x.GraphSearchBytes())} of codes (efSearch x 2M nodes, a page each at most); " : "";
        string rescore = candidates > 0 ? $"; rescoring {candidates} candidates (top {k} x{rescoreFactor}) {Size(x.RescoreBytes(candidates))} of vectors" : "";
        Console.WriteLine($"a query      {graph}exact scan {Size(x.ExactScanBytes)} of codes (every code){rescore}");
    }
}
