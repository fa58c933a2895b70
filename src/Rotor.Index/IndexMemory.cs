namespace Rotor.Index;

/// <summary>
/// What an index file will take in memory when opened, from its 4096-byte header alone (no section is read): the bytes
/// mapped, those read (and decoded into memory) at open, and what a query touches.
/// <para>At open (<see cref="VectorIndex.Open"/>) the small sections are read, checked and decoded: scales, norms,
/// deletion marks, keys, fields, the HNSW graph and the chunk checksums. Codes and kept float32 vectors are mapped (files
/// of 64 MiB and more) and read page by page as queries touch them, each 4 KiB chunk checked on its first use; smaller
/// files are copied whole at open.</para>
/// </summary>
/// <param name="Path">The index file.</param>
/// <param name="FileBytes">The file's length.</param>
/// <param name="Options">The index settings.</param>
/// <param name="Slots">Slots (records ever stored since the last compaction).</param>
/// <param name="Live">Live records.</param>
/// <param name="CodeBytes">Bytes of the codes section.</param>
/// <param name="FullBytes">Bytes of the kept float32 vectors (0 when not kept).</param>
/// <param name="SmallBytes">Bytes of the sections read at open: scales, norms, deletion marks, keys, fields, graph, chunk
/// checksums (and the header).</param>
/// <param name="GraphBytes">Bytes of the graph section (part of <see cref="SmallBytes"/>).</param>
/// <param name="Mapped">Whether <see cref="VectorIndex.Open"/> maps the codes and vectors by default (else copies them).</param>
public sealed record IndexMemory(string Path, long FileBytes, VectorIndexOptions Options, int Slots, long Live, long CodeBytes,
    long FullBytes, long SmallBytes, long GraphBytes, bool Mapped)
{
    /// <summary>A page of the page cache, the unit in which a mapped file becomes resident.</summary>
    public const int PageBytes = 4096;

    /// <summary>Bytes mapped (address space, resident only where touched): codes and vectors when <see cref="Mapped"/>.</summary>
    public long MappedBytes => Mapped ? CodeBytes + FullBytes : 0;

    /// <summary>Bytes read at open, and resident after it: the header and the small sections (decoded into memory, where
    /// keys and fields take a few times their UTF-8 bytes as .NET strings), plus codes and vectors when they are copied.</summary>
    public long ReadAtOpenBytes => SmallBytes + (Mapped ? 0 : CodeBytes + FullBytes);

    /// <summary>Bytes of the codes an exact scan reads: every code.</summary>
    public long ExactScanBytes => CodeBytes;

    /// <summary>Estimated bytes of codes a graph search reads (0 for a flat index): about efSearch x 2M nodes, each on a
    /// page of its own at worst, at most every code.</summary>
    public long GraphSearchBytes(int efSearch = 0)
    {
        if (Options.Structure != IndexStructure.Hnsw) return 0;
        long nodes = (long)(efSearch > 0 ? efSearch : Options.Hnsw.EfSearch) * 2 * Options.Hnsw.M;
        return Math.Min(CodeBytes, nodes * Math.Max(PageBytes, new CodeLayout(Options.Code, Options.Dimensions).Bytes));
    }

    /// <summary>Bytes of kept vectors a rescored query reads: <paramref name="candidates"/> vectors of 4 D bytes, each on
    /// its own pages at worst.</summary>
    public long RescoreBytes(int candidates)
    {
        if (FullBytes == 0 && Options.Code != CodeKind.Float32) return 0;
        long vector = Options.Dimensions * 4L;
        return Math.Min(Options.Code == CodeKind.Float32 ? CodeBytes : FullBytes, candidates * ((vector + PageBytes - 1) / PageBytes + 1) * PageBytes);
    }

    /// <summary>Reads the header of <paramref name="path"/> (and nothing else).</summary>
    /// <exception cref="RotorException">The file is missing, not an index, of another version, or its header is damaged.</exception>
    public static IndexMemory Of(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var h = IndexFile.ReadHeader(path);
        long Len(IndexFile.Section s) => h.Sections.TryGetValue(s, out var e) ? e.Length : 0;
        long codes = Len(IndexFile.Section.Codes), full = Len(IndexFile.Section.Full);
        long small = IndexFile.HeaderBytes + h.Sections.Where(s => s.Key is not (IndexFile.Section.Codes or IndexFile.Section.Full)).Sum(s => s.Value.Length);
        return new IndexMemory(h.Path, h.FileLength, h.Options, h.Slots, h.Live, codes, full, small, Len(IndexFile.Section.Graph),
            h.FileLength >= IndexFile.DefaultMapThreshold);
    }
}
