using System.Text;

namespace Rotor.Cluster;

/// <summary>Which shard a passage belongs to: a function of its id alone, the same on every machine and every run.</summary>
public static class ShardAssignment
{
    /// <summary>The shard of passage <paramref name="passageId"/> among <paramref name="shards"/>: the 64-bit FNV-1a hash
    /// of its UTF-8 bytes modulo the shard count.</summary>
    public static int ShardOf(string passageId, int shards)
    {
        ArgumentNullException.ThrowIfNull(passageId);
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        // string.GetHashCode is randomized per process; FNV-1a is fixed, so every silo and client agree.
        ulong h = 14695981039346656037UL;
        Span<byte> buf = stackalloc byte[256];
        int n = Encoding.UTF8.GetMaxByteCount(passageId.Length) <= buf.Length ? Encoding.UTF8.GetBytes(passageId, buf) : -1;
        ReadOnlySpan<byte> bytes = n >= 0 ? buf[..n] : Encoding.UTF8.GetBytes(passageId);
        foreach (byte b in bytes) { h ^= b; h *= 1099511628211UL; }
        return (int)(h % (ulong)shards);
    }
}
