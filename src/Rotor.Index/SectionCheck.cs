using System.IO.Hashing;
using System.Runtime.CompilerServices;

namespace Rotor.Index;

/// <summary>
/// Checks the bytes of one memory-mapped index section against their checksums the first time they are used, a chunk at
/// a time (docs/INDEX_FORMAT.md, "Chunk checksums"): opening a large index reads its header and small sections only, and
/// the pages of the codes and full-precision vectors are read (and become resident) as queries touch them.
/// <para>Invariant: no byte of a checked section is read for a result — a score, a returned vector, a copy, a save —
/// before the chunk that holds it has matched its checksum. Every accessor of <see cref="CodeStore"/> that hands out a
/// pointer into a mapped section calls <see cref="Ensure"/> for the bytes it covers first; prefetch hints may run ahead
/// (they read nothing that a result depends on). A chunk that fails throws a <see cref="RotorException"/> naming the file,
/// the section and the byte range, on every use, so that a damaged section never gives a silent wrong answer.</para>
/// <para>Thread-safe: two readers may check the same chunk at once (the same work twice, no harm); a chunk is marked
/// with an interlocked OR after its hash matched.</para>
/// </summary>
internal sealed unsafe class SectionCheck
{
    private readonly string _path;
    private readonly byte* _data;
    private readonly ulong[] _hashes;   // (chunks) XXH3-64 of each chunk; the last one may be short
    private readonly ulong[] _done;     // (ceil(chunks / 64)) bit c set = chunk c matched
    private int _pending;               // chunks not yet matched
    private long _bytesChecked;
    private volatile bool _all;

    /// <param name="path">The file, for messages.</param>
    /// <param name="section">The section, for messages.</param>
    /// <param name="data">The section's first byte (mapped).</param>
    /// <param name="length">The section's length.</param>
    /// <param name="chunkBytes">Bytes a chunk (the last is shorter); the whole section when it has one checksum.</param>
    /// <param name="hashes">XXH3-64 (seed 0) of each chunk: ceil(length / chunkBytes) of them.</param>
    public SectionCheck(string path, IndexFile.Section section, byte* data, long length, long chunkBytes, ulong[] hashes)
    {
        if (chunkBytes <= 0) throw new ArgumentOutOfRangeException(nameof(chunkBytes));
        long chunks = length == 0 ? 0 : (length + chunkBytes - 1) / chunkBytes;
        if (hashes.Length != chunks) throw new ArgumentException($"{hashes.Length} chunk hashes for {chunks} chunks", nameof(hashes));
        _path = path; Section = section; _data = data; Length = length; ChunkBytes = chunkBytes; _hashes = hashes;
        _done = new ulong[(chunks + 63) / 64];
        _pending = (int)chunks;
        _all = chunks == 0;
    }

    /// <summary>The section checked.</summary>
    public IndexFile.Section Section { get; }
    /// <summary>The section's length in bytes.</summary>
    public long Length { get; }
    /// <summary>Bytes a chunk.</summary>
    public long ChunkBytes { get; }
    /// <summary>Chunks in the section.</summary>
    public int Chunks => _hashes.Length;
    /// <summary>Whether every chunk has matched.</summary>
    public bool AllChecked => _all;
    /// <summary>Bytes read and matched so far (each chunk counted once).</summary>
    public long BytesChecked => Interlocked.Read(ref _bytesChecked);

    /// <summary>Checks the chunks that hold bytes [offset, offset + length) of the section, unless done before.</summary>
    /// <exception cref="RotorException">A chunk's bytes differ from its checksum.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Ensure(long offset, long length)
    {
        if (!_all) EnsureSlow(offset, length);
    }

    private void EnsureSlow(long offset, long length)
    {
        if (length <= 0) return;
        long c1 = Math.Min(_hashes.Length - 1, (offset + length - 1) / ChunkBytes);
        for (long c = offset / ChunkBytes; c <= c1; c++) EnsureChunk((int)c);
    }

    /// <summary>Checks every chunk not checked yet, reporting bytes of the section done after each.</summary>
    /// <exception cref="RotorException">A chunk's bytes differ from its checksum.</exception>
    public void EnsureAll(Action<long>? progress = null)
    {
        for (int c = 0; c < _hashes.Length && !_all; c++)
        {
            EnsureChunk(c);
            progress?.Invoke(Math.Min(Length, (c + 1) * ChunkBytes));
        }
    }

    private void EnsureChunk(int c)
    {
        ulong bit = 1UL << (c & 63);
        if ((Volatile.Read(ref _done[c >> 6]) & bit) != 0) return;
        long start = c * ChunkBytes, n = Math.Min(ChunkBytes, Length - start);
        if (Hash(_data + start, n) != _hashes[c])
            throw new RotorException($"index file {_path} is corrupt: checksum mismatch in section {Section} (bytes {start}..{start + n} of the section); 'rotor index verify' checks the whole file");
        if ((Interlocked.Or(ref _done[c >> 6], bit) & bit) != 0) return;
        Interlocked.Add(ref _bytesChecked, n);
        if (Interlocked.Decrement(ref _pending) == 0) _all = true;
    }

    /// <summary>XXH3-64 (seed 0) of <paramref name="length"/> bytes at <paramref name="p"/>, in spans of at most 64 MiB.</summary>
    internal static ulong Hash(byte* p, long length)
    {
        if (length <= int.MaxValue) return XxHash3.HashToUInt64(new ReadOnlySpan<byte>(p, (int)length));
        var h = new XxHash3();
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(1 << 26, length - done);
            h.Append(new ReadOnlySpan<byte>(p + done, n));
            done += n;
        }
        return h.GetCurrentHashAsUInt64();
    }
}
