using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Rotor.Rag.Embeddings;

/// <summary>
/// Embeddings of a list of texts saved to a file, so that a corpus is embedded once. Layout (little-endian):
/// <code>
/// "RTEMB001"                      8 bytes magic
/// int32 H                         header length
/// H bytes                         UTF-8 JSON {"model","modelSha256","dimensions","count","maxTokens","textsSha256"}
/// float32[count * dimensions]     row-major, one unit vector a text
/// 32 bytes                        SHA-256 of everything above
/// </code>
/// A file whose checksum or layout is wrong is refused; a sound file made for other texts, another model or other
/// settings is reported as stale and not used.
/// </summary>
public static partial class EmbeddingCache
{
    private static readonly byte[] s_magic = "RTEMB001"u8.ToArray();

    private sealed record Header(string Model, string ModelSha256, int Dimensions, int Count, int MaxTokens, string TextsSha256);

    /// <summary>SHA-256 of the texts (each as its UTF-8 length then its bytes), as hex.</summary>
    public static string HashTexts(IReadOnlyList<string> texts)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> len = stackalloc byte[4];
        foreach (var t in texts)
        {
            var bytes = Encoding.UTF8.GetBytes(t);
            BinaryPrimitives.WriteInt32LittleEndian(len, bytes.Length);
            sha.AppendData(len);
            sha.AppendData(bytes);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>How long <see cref="GetOrCompute"/> waits by default for another process that fills the same cache.</summary>
    public static readonly TimeSpan DefaultLockWait = TimeSpan.FromMinutes(30);

    /// <summary>
    /// The embeddings of <paramref name="texts"/> by <paramref name="embedder"/>: read from <paramref name="path"/> when
    /// it holds them, else computed and saved there atomically. Filling the cache holds its <see cref="FileLock"/> from
    /// the check to the save, so that a second process on the same cache waits for the first and then reads its result
    /// instead of embedding the corpus again. Reading a cache that holds the texts takes no lock, nor does
    /// <see cref="Load"/>.
    /// </summary>
    /// <param name="path">Cache file.</param>
    /// <param name="texts">Texts.</param>
    /// <param name="embedder">Embedder.</param>
    /// <param name="progress">Called with texts done while embedding.</param>
    /// <param name="log">Says whether the cache was used, and why not, and when it waits for another process.</param>
    /// <param name="lockWait">How long to wait for another process that holds the cache (default <see cref="DefaultLockWait"/>).</param>
    /// <returns>(texts.Count, Dimensions) row-major, and whether they came from the file.</returns>
    /// <exception cref="RotorException">The file exists but is corrupt, or another process held it past <paramref name="lockWait"/>.</exception>
    public static (float[] Vectors, bool FromCache) GetOrCompute(string path, IReadOnlyList<string> texts, SentenceEmbedder embedder,
        Action<int>? progress = null, TextWriter? log = null, TimeSpan? lockWait = null)
    {
        var expected = new Header(embedder.ModelId, embedder.ModelSha256, embedder.Dimensions, texts.Count, embedder.Options.MaxTokens, HashTexts(texts));
        // A cache that holds these texts is read without the lock (saves are atomic renames), so a cache in a folder
        // this process may not write to still serves; the lock is taken only to fill it, and the file is read again
        // under the lock because another process may have filled it in the meantime.
        if (TryCached(path, expected, log, quiet: true) is { } cached) return (cached, true);
        using var writer = FileLock.Acquire(path, lockWait ?? DefaultLockWait, why => log?.WriteLine($"waiting: {why}"));
        if (TryCached(path, expected, log, quiet: false) is { } filled) return (filled, true);
        var result = new float[texts.Count * embedder.Dimensions];
        embedder.Embed(texts, result, progress);
        Write(path, expected, result);
        return (result, false);
    }

    // The vectors of the file when it holds the expected embeddings, else null (saying why unless quiet).
    private static float[]? TryCached(string path, Header expected, TextWriter? log, bool quiet)
    {
        if (!File.Exists(path)) return null;
        var (header, vectors) = Read(path);
        if (header == expected)
        {
            log?.WriteLine($"{path}: using {header.Count:N0} cached embeddings");
            return vectors;
        }
        if (!quiet) log?.WriteLine($"{path}: stale ({Difference(header, expected)}); embedding again");
        return null;
    }

    /// <summary>Reads a cache file's vectors and what they were made from.</summary>
    /// <exception cref="RotorException">Bad magic, header, length or checksum; the message names the file and the field.</exception>
    public static (string Model, int Dimensions, int Count, float[] Vectors) Load(string path)
    {
        var (h, v) = Read(path);
        return (h.Model, h.Dimensions, h.Count, v);
    }

    private static void Write(string path, Header header, float[] vectors)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header, CacheJson.Default.Header);
        AtomicFile.Write(path, stream =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            void Put(ReadOnlySpan<byte> bytes) { stream.Write(bytes); sha.AppendData(bytes); }
            Put(s_magic);
            Span<byte> len = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(len, json.Length);
            Put(len);
            Put(json);
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("embedding cache files are written on little-endian machines only");
            Put(MemoryMarshal.AsBytes(vectors.AsSpan()));
            stream.Write(sha.GetHashAndReset());
        });
    }

    private static (Header, float[]) Read(string path)
    {
        byte[] all;
        try { all = File.ReadAllBytes(path); }
        catch (IOException e) { throw new RotorException($"{path}: cannot read the embedding cache: {e.Message}", e); }
        if (all.Length < s_magic.Length + 4 + 32 || !all.AsSpan(0, s_magic.Length).SequenceEqual(s_magic))
            throw new RotorException($"{path}: not a Rotor embedding cache (magic 'RTEMB001' expected)");
        var body = all.AsSpan(0, all.Length - 32);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(all.AsSpan(all.Length - 32)))
            throw new RotorException($"{path}: checksum mismatch: the file is corrupt or truncated; delete it to embed again");
        int h = BinaryPrimitives.ReadInt32LittleEndian(all.AsSpan(s_magic.Length, 4));
        if (h <= 0 || s_magic.Length + 4 + h > body.Length) throw new RotorException($"{path}: header length {h} does not fit the file ({all.Length} bytes)");
        Header header;
        try { header = JsonSerializer.Deserialize(all.AsSpan(s_magic.Length + 4, h), CacheJson.Default.Header) ?? throw new JsonException("null header"); }
        catch (JsonException e) { throw new RotorException($"{path}: header is not valid: {e.Message}", e); }
        if (header.Dimensions <= 0 || header.Count < 0) throw new RotorException($"{path}: header has dimensions {header.Dimensions} and count {header.Count}");
        long floats = (long)header.Dimensions * header.Count;
        long dataBytes = body.Length - (s_magic.Length + 4 + h);
        if (dataBytes != floats * 4)
            throw new RotorException($"{path}: holds {dataBytes} bytes of vectors, the header's count {header.Count} x dimensions {header.Dimensions} needs {floats * 4}");
        var vectors = new float[floats];
        body.Slice(s_magic.Length + 4 + h).CopyTo(MemoryMarshal.AsBytes(vectors.AsSpan()));
        return (header, vectors);
    }

    private static string Difference(Header a, Header b)
    {
        if (a.Model != b.Model) return $"model {a.Model}, now {b.Model}";
        if (a.ModelSha256 != b.ModelSha256) return "the model file differs";
        if (a.Dimensions != b.Dimensions) return $"dimensions {a.Dimensions}, now {b.Dimensions}";
        if (a.MaxTokens != b.MaxTokens) return $"max tokens {a.MaxTokens}, now {b.MaxTokens}";
        if (a.Count != b.Count) return $"{a.Count:N0} texts, now {b.Count:N0}";
        return "the texts differ";
    }

    [System.Text.Json.Serialization.JsonSerializable(typeof(Header))]
    [System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
    private sealed partial class CacheJson : System.Text.Json.Serialization.JsonSerializerContext;
}
