using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;

namespace Rotor.Index;

/// <summary>
/// Reads and writes the index file (docs/INDEX_FORMAT.md is the spec): a 4096-byte header, then sections aligned to
/// 4096 bytes so that the large ones (codes, full-precision vectors) can be memory-mapped. Every section and the header
/// carry an XXH3-64 checksum. Little-endian throughout.
/// </summary>
internal static unsafe class IndexFile
{
    public static ReadOnlySpan<byte> Magic => "ROTORIDX"u8;
    /// <summary>The version written. 2 stores ternary codes as non-zero mask + sign planes; version 1 (+1 plane, -1 plane)
    /// is still read, its ternary codes converted while loading (docs/INDEX_FORMAT.md).</summary>
    public const int Version = 2;
    /// <summary>The oldest version read.</summary>
    public const int OldestVersion = 1;
    public const int HeaderBytes = 4096;
    public const int Align = 4096;
    public const int MaxSections = 16;
    public const int SectionTableOffset = 96;
    public const int SectionEntryBytes = 32;
    public const int HeaderChecksumOffset = SectionTableOffset + MaxSections * SectionEntryBytes; // 608
    public const long DefaultMapThreshold = 64L << 20;

    /// <summary>Bytes a chunk of the chunk checksums (section <see cref="Section.Chunks"/>) that the writer uses: one page,
    /// so that checking a code or a vector on first use reads no page the query would not (a graph search visits codes
    /// at random: larger chunks would check, and make resident, most of the codes on the first queries). The checksums
    /// take 8 bytes a page, 0.2% of the mapped sections, read at open.</summary>
    public const int ChunkBytes = 4096;
    /// <summary>The chunk sizes a reader accepts.</summary>
    public const long MinChunkBytes = 4096, MaxChunkBytes = 64L << 20;

    /// <summary>Section ids. <see cref="Section.Chunks"/> holds checksums of every 4 KiB of the mappable sections
    /// (codes, full vectors), so that they are verified a chunk at a time on first use.</summary>
    public enum Section : uint { Codes = 1, Scales = 2, Norms = 3, Full = 4, Deleted = 5, Keys = 6, Fields = 7, Graph = 8, Chunks = 9 }

    /// <summary>A section table entry.</summary>
    internal readonly record struct SectionEntry(long Offset, long Length, ulong Hash);

    /// <summary>What the header says, checked (docs/INDEX_FORMAT.md, "Reading"): nothing past the first 4096 bytes is read.</summary>
    internal sealed record Header(string Path, long FileLength, uint Version, VectorIndexOptions Options, int Slots, long Live,
        IReadOnlyDictionary<Section, SectionEntry> Sections);

    /// <summary>Test hook: runs after the temporary file is written and flushed, before the rename.</summary>
    internal static Action<string>? BeforeRename;
    /// <summary>Test hook: runs once the temporary file is created, before its first byte is written (the killed-save
    /// test's child process announces the write here, so that a kill can land inside it).</summary>
    internal static Action<string>? TempCreated;

    // ---- save ---------------------------------------------------------------------------------------------------

    public static void Save(VectorIndex index, string path)
    {
        path = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(dir);
        string name = Path.GetFileName(path);
        DeleteStaleTemps(dir, name);
        string tmp = Path.Combine(dir, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20))
            {
                TempCreated?.Invoke(tmp);
                WriteTo(index, fs);
                fs.Flush(flushToDisk: true);
            }
            BeforeRename?.Invoke(tmp);
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Deletes temporary files <c>.NAME.PID.GUID.tmp</c> of <paramref name="name"/> left by processes that no
    /// longer run (killed in the middle of a save). Temporaries of this process or of a live one are kept: they may
    /// belong to a save in progress. Readers never look at temporaries, so this is tidying, not recovery.</summary>
    internal static void DeleteStaleTemps(string dir, string name)
    {
        string prefix = "." + name + ".";
        IEnumerable<string> files;
        try { files = Directory.EnumerateFiles(dir, ".*.tmp").ToList(); }
        catch (IOException) { return; }
        catch (UnauthorizedAccessException) { return; }
        foreach (string file in files)
        {
            string f = Path.GetFileName(file);
            if (!f.StartsWith(prefix, StringComparison.Ordinal)) continue;
            string[] rest = f[prefix.Length..].Split('.');
            if (rest.Length != 3 || rest[2] != "tmp" || !int.TryParse(rest[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)) continue;
            if (pid == Environment.ProcessId || ProcessRuns(pid)) continue;
            try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static bool ProcessRuns(int pid)
    {
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }     // no such process
        catch (InvalidOperationException) { return false; }
    }

    private static void WriteTo(VectorIndex index, FileStream fs)
    {
        var o = index.Options;
        var store = index.Store;
        // A save of a mapped index reads every code and vector: damaged bytes must fail here rather than be written
        // again under fresh checksums.
        store.CheckAll();
        int slots = store.Count;
        var entries = new List<(Section Id, long Offset, long Length, ulong Hash)>();
        var chunked = new List<(Section Id, ulong[] Hashes)>();
        fs.Write(new byte[HeaderBytes]);

        void Put(Section id, ReadOnlySpan<byte> data) => PutPtr(id, data);
        void PutPtr(Section id, ReadOnlySpan<byte> data)
        {
            Pad(fs);
            long off = fs.Position;
            fs.Write(data);
            entries.Add((id, off, data.Length, XxHash3.HashToUInt64(data)));
        }
        void PutNative(Section id, byte* p, long length)
        {
            Pad(fs);
            long off = fs.Position;
            var h = new XxHash3();
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(1 << 26, length - done);
                var span = new ReadOnlySpan<byte>(p + done, n);
                fs.Write(span); h.Append(span);
                done += n;
            }
            entries.Add((id, off, length, h.GetCurrentHashAsUInt64()));
            var chunks = new ulong[(length + ChunkBytes - 1) / ChunkBytes];
            for (long c = 0; c < chunks.Length; c++)
                chunks[c] = XxHash3.HashToUInt64(new ReadOnlySpan<byte>(p + c * ChunkBytes, (int)Math.Min(ChunkBytes, length - c * ChunkBytes)));
            chunked.Add((id, chunks));
        }

        PutNative(Section.Codes, store.Codes.Pointer, (long)slots * store.Layout.Bytes);
        Put(Section.Scales, MemoryMarshal.AsBytes(store.Scales.AsSpan(0, slots)));
        Put(Section.Norms, MemoryMarshal.AsBytes(store.Norms.AsSpan(0, slots)));
        if (store.Full is not null) PutNative(Section.Full, store.Full.Pointer, (long)slots * o.Dimensions * 4);
        Put(Section.Deleted, MemoryMarshal.AsBytes(index.DeletedBits.AsSpan(0, (slots + 63) / 64)));
        Put(Section.Keys, EncodeKeys(index.Keys, slots));
        Put(Section.Fields, EncodeFields(index.FieldsBySlot, slots));
        if (index.Graph is { } g) Put(Section.Graph, EncodeGraph(g, slots));
        Put(Section.Chunks, EncodeChunks(chunked));

        var header = new byte[HeaderBytes];
        var hs = header.AsSpan();
        Magic.CopyTo(hs);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[12..], HeaderBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[16..], (uint)o.Dimensions);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[20..], (uint)o.Code);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[24..], (uint)o.Metric);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[28..], (uint)o.Structure);
        BinaryPrimitives.WriteUInt64LittleEndian(hs[32..], (ulong)slots);
        BinaryPrimitives.WriteUInt64LittleEndian(hs[40..], (ulong)(slots - CountDeleted(index, slots)));
        BinaryPrimitives.WriteUInt32LittleEndian(hs[48..], (uint)o.Hnsw.M);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[52..], (uint)o.Hnsw.EfConstruction);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[56..], (uint)o.Hnsw.EfSearch);
        BinaryPrimitives.WriteInt32LittleEndian(hs[60..], o.Hnsw.Seed);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[64..], o.KeepFullPrecision ? 1u : 0u);
        BinaryPrimitives.WriteUInt32LittleEndian(hs[68..], (uint)entries.Count);
        BinaryPrimitives.WriteUInt64LittleEndian(hs[72..], (ulong)fs.Length);
        for (int i = 0; i < entries.Count; i++)
        {
            var e = hs.Slice(SectionTableOffset + i * SectionEntryBytes, SectionEntryBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(e, (uint)entries[i].Id);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], (ulong)entries[i].Offset);
            BinaryPrimitives.WriteUInt64LittleEndian(e[16..], (ulong)entries[i].Length);
            BinaryPrimitives.WriteUInt64LittleEndian(e[24..], entries[i].Hash);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(hs[HeaderChecksumOffset..], XxHash3.HashToUInt64(hs[..HeaderChecksumOffset]));
        fs.Position = 0;
        fs.Write(header);
    }

    private static int CountDeleted(VectorIndex index, int slots)
    {
        int n = 0;
        for (int s = 0; s < slots; s++) if (index.IsDeleted(s)) n++;
        return n;
    }

    private static void Pad(FileStream fs)
    {
        long pad = (Align - fs.Position % Align) % Align;
        if (pad > 0) fs.Write(new byte[pad]);
    }

    private static byte[] EncodeChunks(List<(Section Id, ulong[] Hashes)> chunked)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        w.Write((uint)ChunkBytes); w.Write((uint)chunked.Count);
        foreach (var (id, hashes) in chunked)
        {
            w.Write((uint)id); w.Write(0u); w.Write((ulong)hashes.Length);
            w.Write(MemoryMarshal.AsBytes(hashes.AsSpan()));
        }
        w.Flush();
        return ms.ToArray();
    }

    /// <summary>The chunk table: for each section listed, its chunk size and the XXH3-64 of each chunk.</summary>
    private static Dictionary<Section, (long ChunkBytes, ulong[] Hashes)> DecodeChunks(ReadOnlySpan<byte> data, IReadOnlyDictionary<Section, SectionEntry> sections, string path)
    {
        var table = new Dictionary<Section, (long, ulong[])>();
        if (data.Length < 8) throw new RotorException($"index file {path}: chunk checksum section ends early");
        long chunkBytes = BinaryPrimitives.ReadUInt32LittleEndian(data);
        int n = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(data[4..]), int.MaxValue);
        if (chunkBytes < MinChunkBytes || chunkBytes > MaxChunkBytes)
            throw new RotorException($"index file {path}: chunk checksums of {chunkBytes} bytes a chunk, expected {MinChunkBytes}..{MaxChunkBytes}");
        int p = 8;
        for (int i = 0; i < n; i++)
        {
            if (p + 16 > data.Length) throw new RotorException($"index file {path}: chunk checksum section ends early");
            var id = (Section)BinaryPrimitives.ReadUInt32LittleEndian(data[p..]);
            ulong count = BinaryPrimitives.ReadUInt64LittleEndian(data[(p + 8)..]);
            p += 16;
            if (!sections.TryGetValue(id, out var s)) throw new RotorException($"index file {path}: chunk checksums for section {id}, which the file does not have");
            long expect = (s.Length + chunkBytes - 1) / chunkBytes;
            if (count != (ulong)expect) throw new RotorException($"index file {path}: {count} chunk checksums for section {id}, expected {expect} for its {s.Length} bytes");
            if (p + expect * 8 > data.Length) throw new RotorException($"index file {path}: chunk checksum section ends early");
            if (!table.TryAdd(id, (chunkBytes, MemoryMarshal.Cast<byte, ulong>(data.Slice(p, (int)expect * 8)).ToArray())))
                throw new RotorException($"index file {path}: chunk checksums for section {id} appear twice");
            p += (int)expect * 8;
        }
        if (p != data.Length) throw new RotorException($"index file {path}: chunk checksum section has {data.Length - p} trailing bytes");
        return table;
    }

    private static byte[] EncodeKeys(IReadOnlyList<string> keys, int slots)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms, Encoding.UTF8);
        for (int s = 0; s < slots; s++)
        {
            byte[] b = Encoding.UTF8.GetBytes(keys[s]);
            w.Write(b.Length); w.Write(b);
        }
        w.Flush();
        return ms.ToArray();
    }

    // Field value tags.
    private const byte TagString = 1, TagLong = 2, TagDouble = 3, TagBool = 4;

    private static byte[] EncodeFields(IReadOnlyList<IReadOnlyDictionary<string, object>?> fields, int slots)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms, Encoding.UTF8);
        for (int s = 0; s < slots; s++)
        {
            var f = fields[s];
            w.Write(f?.Count ?? 0);
            if (f is null) continue;
            foreach (var (name, value) in f)
            {
                WriteString(w, name);
                switch (value)
                {
                    case string str: w.Write(TagString); WriteString(w, str); break;
                    case long l: w.Write(TagLong); w.Write(l); break;
                    case double d: w.Write(TagDouble); w.Write(d); break;
                    case bool b: w.Write(TagBool); w.Write(b); break;
                    default: throw new InvalidOperationException($"field '{name}' has unexpected type {value.GetType()}");
                }
            }
        }
        w.Flush();
        return ms.ToArray();
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        w.Write(b.Length); w.Write(b);
    }

    private static byte[] EncodeGraph(Hnsw g, int slots)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        w.Write(g.Count); w.Write(g.EntryPoint); w.Write(g.MaxLevel); w.Write(g.M);
        w.Write(g.Levels, 0, g.Count);
        w.Write(MemoryMarshal.AsBytes(g.Links0.AsSpan(0, g.Count * (1 + g.M0))));
        for (int s = 0; s < g.Count; s++)
            if (g.Upper[s] is { } u) w.Write(MemoryMarshal.AsBytes(u.AsSpan()));
        w.Flush();
        return ms.ToArray();
    }

    // ---- load ---------------------------------------------------------------------------------------------------

    /// <summary>Reads and checks the header and section table of an index file; reads nothing past the header.</summary>
    /// <exception cref="RotorException">The file is missing, truncated, not an index, of another version, or its header
    /// is damaged (the message says which).</exception>
    internal static Header ReadHeader(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path)) throw new RotorException($"index file {path} does not exist");
        long fileLength = new FileInfo(path).Length;
        if (fileLength < HeaderBytes) throw new RotorException($"index file {path} is truncated: {fileLength} bytes, the header alone is {HeaderBytes}");
        var header = new byte[HeaderBytes];
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete))
            fs.ReadExactly(header);
        var hs = (ReadOnlySpan<byte>)header;
        if (!hs[..8].SequenceEqual(Magic)) throw new RotorException($"{path} is not a Rotor index file: magic is '{Encoding.ASCII.GetString(hs[..8])}', expected 'ROTORIDX'");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(hs[8..]);
        if (version < OldestVersion || version > Version)
            throw new RotorException($"index file {path} has format version {version}; this build reads versions {OldestVersion} to {Version}");
        ulong hsum = BinaryPrimitives.ReadUInt64LittleEndian(hs[HeaderChecksumOffset..]);
        if (XxHash3.HashToUInt64(hs[..HeaderChecksumOffset]) != hsum) throw new RotorException($"index file {path} is corrupt: header checksum mismatch");
        long expectLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(hs[72..]);
        if (fileLength < expectLength) throw new RotorException($"index file {path} is truncated: {fileLength} bytes, the header says {expectLength}");
        var options = new VectorIndexOptions
        {
            Dimensions = (int)BinaryPrimitives.ReadUInt32LittleEndian(hs[16..]),
            Code = (CodeKind)BinaryPrimitives.ReadUInt32LittleEndian(hs[20..]),
            Metric = (Metric)BinaryPrimitives.ReadUInt32LittleEndian(hs[24..]),
            Structure = (IndexStructure)BinaryPrimitives.ReadUInt32LittleEndian(hs[28..]),
            Hnsw = new HnswSettings((int)BinaryPrimitives.ReadUInt32LittleEndian(hs[48..]), (int)BinaryPrimitives.ReadUInt32LittleEndian(hs[52..]),
                (int)BinaryPrimitives.ReadUInt32LittleEndian(hs[56..]), BinaryPrimitives.ReadInt32LittleEndian(hs[60..])),
            KeepFullPrecision = BinaryPrimitives.ReadUInt32LittleEndian(hs[64..]) != 0,
        };
        try { options.Validate(); }
        catch (ArgumentException e) { throw new RotorException($"index file {path} has an invalid header: {e.Message}", e); }
        long slotsL = (long)BinaryPrimitives.ReadUInt64LittleEndian(hs[32..]);
        if (slotsL > int.MaxValue) throw new RotorException($"index file {path}: slot count {slotsL} is too large");
        long live = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(hs[40..]), (ulong)slotsL);
        int nSections = (int)BinaryPrimitives.ReadUInt32LittleEndian(hs[68..]);
        if (nSections > MaxSections) throw new RotorException($"index file {path}: {nSections} sections, at most {MaxSections}");
        var sections = new Dictionary<Section, SectionEntry>();
        for (int i = 0; i < nSections; i++)
        {
            var e = hs.Slice(SectionTableOffset + i * SectionEntryBytes, SectionEntryBytes);
            var id = (Section)BinaryPrimitives.ReadUInt32LittleEndian(e);
            long off = (long)BinaryPrimitives.ReadUInt64LittleEndian(e[8..]), len = (long)BinaryPrimitives.ReadUInt64LittleEndian(e[16..]);
            if (off < HeaderBytes || len < 0 || off + len > fileLength || off + len < off)
                throw new RotorException($"index file {path} is truncated or corrupt: section {id} spans bytes {off}..{off + len} of a {fileLength}-byte file");
            sections[id] = new SectionEntry(off, len, BinaryPrimitives.ReadUInt64LittleEndian(e[24..]));
        }
        return new Header(path, fileLength, version, options, (int)slotsL, live, sections);
    }

    /// <summary>Opens an index file. The header and section table are checked; the sections that are copied or decoded
    /// (scales, norms, deletion marks, keys, fields, graph, chunk checksums, and codes and vectors when not mapped) are
    /// verified as they are read; the mapped ones (codes, full vectors) are verified a chunk at a time on first use
    /// (<see cref="SectionCheck"/>), so that opening reads neither of them.</summary>
    public static VectorIndex Load(string path, bool? memoryMap, bool verify, Func<VectorIndexOptions, VectorIndex> create)
    {
        var h = ReadHeader(path);
        path = h.Path;
        var options = h.Options;
        int slots = h.Slots;
        long fileLength = h.FileLength;
        var sections = h.Sections;
        var layout = new CodeLayout(options.Code, options.Dimensions);
        bool map = memoryMap ?? fileLength >= DefaultMapThreshold;
        // Version 1 ternary codes are converted in place, so they are copied, never mapped (the other sections may be).
        bool convertV1 = h.Version == 1 && options.Code == CodeKind.Ternary;
        var mapped = new MappedFile(path, fileLength);
        try
        {
            SectionEntry Need(Section id, long expected)
            {
                if (!sections.TryGetValue(id, out var s)) throw new RotorException($"index file {path} has no {id} section");
                if (expected >= 0 && s.Length != expected) throw new RotorException($"index file {path}: section {id} has {s.Length} bytes, expected {expected} for {slots} slots");
                return s;
            }
            // A checker of the whole section against its one checksum (read and checked at once: used for what is read now).
            SectionCheck Whole(Section id, SectionEntry s)
                => new(path, id, mapped.Pointer + s.Offset, s.Length, Math.Max(1, s.Length), s.Length == 0 ? [] : [s.Hash]);
            ReadOnlySpan<byte> Small(Section id, long expected)
            {
                var s = Need(id, expected);
                if (verify) Whole(id, s).EnsureAll();
                return new ReadOnlySpan<byte>(mapped.Pointer + s.Offset, checked((int)s.Length));
            }
            // The chunk checksums are small and read at open (checked like every small section), used where a section
            // stays mapped and is verified lazily.
            var chunks = verify && sections.ContainsKey(Section.Chunks) ? DecodeChunks(Small(Section.Chunks, -1), sections, path) : [];
            NativeBuffer Buffer(Section id, long expected, bool copy = false)
            {
                var s = Need(id, expected);
                if (map && !copy)
                {
                    var buffer = new NativeBuffer(mapped, s.Offset, s.Length);
                    if (verify)
                        buffer.SetCheck(chunks.TryGetValue(id, out var c)
                            ? new SectionCheck(path, id, mapped.Pointer + s.Offset, s.Length, c.ChunkBytes, c.Hashes)
                            : Whole(id, s));    // a file without chunk checksums: the whole section on its first use
                    return buffer;
                }
                if (verify) Whole(id, s).EnsureAll();
                var b = new NativeBuffer();
                b.Reserve(s.Length); b.SetLength(s.Length);
                System.Buffer.MemoryCopy(mapped.Pointer + s.Offset, b.Pointer, s.Length, s.Length);
                return b;
            }

            var codes = Buffer(Section.Codes, (long)slots * layout.Bytes, copy: convertV1);
            if (convertV1) ConvertTernaryV1(codes.Pointer, layout.Words, slots);
            NativeBuffer? full = options.KeepFullPrecision && options.Code != CodeKind.Float32 ? Buffer(Section.Full, (long)slots * options.Dimensions * 4) : null;
            var scales = new float[Math.Max(16, slots)];
            MemoryMarshal.Cast<byte, float>(Small(Section.Scales, slots * 4L)).CopyTo(scales);
            var norms = new float[Math.Max(16, slots)];
            MemoryMarshal.Cast<byte, float>(Small(Section.Norms, slots * 4L)).CopyTo(norms);
            var deleted = new ulong[Math.Max(1, (slots + 63) / 64)];
            MemoryMarshal.Cast<byte, ulong>(Small(Section.Deleted, (slots + 63) / 64 * 8L)).CopyTo(deleted);
            var keys = DecodeKeys(Small(Section.Keys, -1), slots, path);
            var fields = DecodeFields(Small(Section.Fields, -1), slots, path);

            var index = create(options);
            var store = new CodeStore(layout, options.KeepFullPrecision);
            store.Replace(codes, full, scales, norms, slots);
            Hnsw? graph = null;
            if (options.Structure == IndexStructure.Hnsw) graph = DecodeGraph(Small(Section.Graph, -1), store, options, slots, path);
            index.RestoreFrom(store, keys, fields, deleted, graph);
            return index;
        }
        catch (Exception e) when (e is EndOfStreamException or ArgumentOutOfRangeException or IndexOutOfRangeException or DecoderFallbackException or OverflowException)
        {
            throw new RotorException($"index file {path} is corrupt: {e.Message}", e);
        }
        finally { mapped.Release(); }
    }

    /// <summary>The full check of an index file: the header, every section against its checksum and every chunk against
    /// its chunk checksum (read once, in order, through a file stream rather than the mapping), then the decoded
    /// structure (keys, fields, graph). <paramref name="progress"/> gets bytes done and the total after each block.</summary>
    /// <exception cref="RotorException">The first damage found (the message names the file and the section).</exception>
    public static void Verify(string path, Action<long, long>? progress)
    {
        var h = ReadHeader(path);
        path = h.Path;
        long total = h.Sections.Values.Sum(s => s.Length), done = 0;
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.SequentialScan);
        byte[] ReadSection(SectionEntry s)
        {
            var b = new byte[s.Length];
            fs.Position = s.Offset; fs.ReadExactly(b);
            return b;
        }
        Dictionary<Section, (long ChunkBytes, ulong[] Hashes)> chunks = [];
        if (h.Sections.TryGetValue(Section.Chunks, out var cs) && cs.Length <= int.MaxValue)
        {
            var bytes = ReadSection(cs);
            if (XxHash3.HashToUInt64(bytes) != cs.Hash) throw new RotorException($"index file {path} is corrupt: checksum mismatch in section {Section.Chunks}");
            chunks = DecodeChunks(bytes, h.Sections, path);
        }
        var buffer = new byte[8 << 20];
        foreach (var (id, s) in h.Sections.OrderBy(e => e.Value.Offset))
        {
            var whole = new XxHash3();
            chunks.TryGetValue(id, out var c);
            // A block is a whole number of chunks, so that each chunk is hashed from one span.
            int block = c.Hashes is null ? buffer.Length : (int)Math.Max(c.ChunkBytes, buffer.Length / c.ChunkBytes * c.ChunkBytes);
            if (block > buffer.Length) buffer = new byte[block];
            fs.Position = s.Offset;
            for (long at = 0; at < s.Length;)
            {
                int n = (int)Math.Min(block, s.Length - at);
                fs.ReadExactly(buffer, 0, n);
                var span = buffer.AsSpan(0, n);
                whole.Append(span);
                if (c.Hashes is not null)
                    for (int o = 0; o < n; o += (int)c.ChunkBytes)
                    {
                        long chunk = (at + o) / c.ChunkBytes;
                        int m = (int)Math.Min(c.ChunkBytes, n - o);
                        if (XxHash3.HashToUInt64(span.Slice(o, m)) != c.Hashes[chunk])
                            throw new RotorException($"index file {path} is corrupt: checksum mismatch in section {id} (bytes {at + o}..{at + o + m} of the section)");
                    }
                at += n; done += n;
                progress?.Invoke(done, total);
            }
            if (whole.GetCurrentHashAsUInt64() != s.Hash) throw new RotorException($"index file {path} is corrupt: checksum mismatch in section {id}");
        }
        // Every byte matched its checksum; now the structure (lengths, keys, fields, graph links), without checking again.
        using var _ = Load(path, memoryMap: true, verify: false, o => VectorIndex.CreateForLoad(o));
    }

    /// <summary>Version 1 ternary code [+1 plane][-1 plane] to version 2 [non-zero mask][sign]: mask = p | m, sign = m.</summary>
    internal static void ConvertTernaryV1(byte* codes, int words, int slots)
    {
        ulong* w = (ulong*)codes;
        for (long s = 0; s < slots; s++, w += 2 * words)
            for (int i = 0; i < words; i++) w[i] |= w[words + i];
    }

    private static List<string> DecodeKeys(ReadOnlySpan<byte> data, int slots, string path)
    {
        var keys = new List<string>(slots);
        int p = 0;
        for (int s = 0; s < slots; s++) keys.Add(ReadString(data, ref p, path, "keys"));
        if (p != data.Length) throw new RotorException($"index file {path}: keys section has {data.Length - p} trailing bytes");
        return keys;
    }

    private static string ReadString(ReadOnlySpan<byte> data, ref int p, string path, string section)
    {
        if (p + 4 > data.Length) throw new RotorException($"index file {path}: {section} section ends inside a string length");
        int n = BinaryPrimitives.ReadInt32LittleEndian(data[p..]); p += 4;
        if (n < 0 || p + n > data.Length) throw new RotorException($"index file {path}: {section} section has a string of {n} bytes past its end");
        string s = Encoding.UTF8.GetString(data.Slice(p, n)); p += n;
        return s;
    }

    private static List<IReadOnlyDictionary<string, object>?> DecodeFields(ReadOnlySpan<byte> data, int slots, string path)
    {
        var list = new List<IReadOnlyDictionary<string, object>?>(slots);
        int p = 0;
        void Need(int n, ReadOnlySpan<byte> d, int at) { if (at + n > d.Length) throw new RotorException($"index file {path}: fields section ends early at byte {at}"); }
        for (int s = 0; s < slots; s++)
        {
            Need(4, data, p);
            int count = BinaryPrimitives.ReadInt32LittleEndian(data[p..]); p += 4;
            if (count < 0 || count > 1 << 20) throw new RotorException($"index file {path}: slot {s} has {count} fields");
            if (count == 0) { list.Add(null); continue; }
            var d = new Dictionary<string, object>(count, StringComparer.Ordinal);
            for (int i = 0; i < count; i++)
            {
                string name = ReadString(data, ref p, path, "fields");
                Need(1, data, p);
                byte tag = data[p++];
                object v;
                switch (tag)
                {
                    case TagString: v = ReadString(data, ref p, path, "fields"); break;
                    case TagLong: Need(8, data, p); v = BinaryPrimitives.ReadInt64LittleEndian(data[p..]); p += 8; break;
                    case TagDouble: Need(8, data, p); v = BinaryPrimitives.ReadDoubleLittleEndian(data[p..]); p += 8; break;
                    case TagBool: Need(1, data, p); v = data[p++] != 0; break;
                    default: throw new RotorException($"index file {path}: field '{name}' of slot {s} has unknown type tag {tag}");
                }
                d[name] = v;
            }
            list.Add(d);
        }
        return list;
    }

    private static Hnsw DecodeGraph(ReadOnlySpan<byte> data, CodeStore store, VectorIndexOptions o, int slots, string path)
    {
        int p = 0;
        if (data.Length < 16) throw new RotorException($"index file {path}: graph section ends early");
        int count = BinaryPrimitives.ReadInt32LittleEndian(data), entry = BinaryPrimitives.ReadInt32LittleEndian(data[4..]);
        int maxLevel = BinaryPrimitives.ReadInt32LittleEndian(data[8..]), m = BinaryPrimitives.ReadInt32LittleEndian(data[12..]);
        p = 16;
        if (count != slots || m != o.Hnsw.M) throw new RotorException($"index file {path}: graph has {count} nodes and M = {m}, expected {slots} and {o.Hnsw.M}");
        var g = new Hnsw(store, o.Metric, o.Hnsw);
        if (p + count > data.Length) throw new RotorException($"index file {path}: graph section ends early");
        var levels = new byte[Math.Max(16, count)];
        data.Slice(p, count).CopyTo(levels); p += count;
        long l0 = (long)count * (1 + g.M0) * 4;
        if (p + l0 > data.Length) throw new RotorException($"index file {path}: graph section ends early");
        var links0 = new int[count * (1 + g.M0)];
        MemoryMarshal.Cast<byte, int>(data.Slice(p, (int)l0)).CopyTo(links0); p += (int)l0;
        var upper = new int[Math.Max(16, count)][];
        for (int s = 0; s < count; s++)
        {
            if (levels[s] == 0) continue;
            int n = levels[s] * (1 + m) * 4;
            if (p + n > data.Length) throw new RotorException($"index file {path}: graph section ends early");
            var u = MemoryMarshal.Cast<byte, int>(data.Slice(p, n)).ToArray(); p += n;
            for (int i = 0; i < u.Length; i += 1 + m)
            {
                if (u[i] < 0 || u[i] > m) throw new RotorException($"index file {path}: graph node {s} has {u[i]} upper links");
                for (int j = 1; j <= u[i]; j++) if ((uint)u[i + j] >= (uint)count) throw new RotorException($"index file {path}: graph link to node {u[i + j]} of {count}");
            }
            upper[s] = u;
        }
        for (int i = 0; i < links0.Length; i += 1 + g.M0)
        {
            int c = links0[i];
            if (c < 0 || c > g.M0) throw new RotorException($"index file {path}: graph node {i / (1 + g.M0)} has {c} links");
            for (int j = 1; j <= c; j++) if ((uint)links0[i + j] >= (uint)count) throw new RotorException($"index file {path}: graph link to node {links0[i + j]} of {count}");
        }
        if (count > 0 && ((uint)entry >= (uint)count || maxLevel != levels[entry])) throw new RotorException($"index file {path}: graph entry point {entry} is invalid");
        if (p != data.Length) throw new RotorException($"index file {path}: graph section has {data.Length - p} trailing bytes");
        g.Restore(count, levels, links0, upper, count == 0 ? -1 : entry, count == 0 ? -1 : maxLevel);
        return g;
    }
}
