using System.Numerics;
using System.Runtime.Intrinsics;

namespace Rotor;

/// <summary>
/// A ternary vector as two bit planes (<see cref="TernaryFormat.BitPlanes"/>): bit j of word j/64 of
/// <see cref="Plus"/> is set where v[j] = +1, of <see cref="Minus"/> where v[j] = -1. The dot product of two such
/// vectors is <c>popcount((a+ &amp; b+) | (a- &amp; b-)) - popcount((a+ &amp; b-) | (a- &amp; b+))</c>.
/// </summary>
public sealed class BitPlaneVector
{
    /// <summary>The +1 plane.</summary>
    public ulong[] Plus { get; }
    /// <summary>The -1 plane.</summary>
    public ulong[] Minus { get; }
    /// <summary>Length in trits.</summary>
    public int Length { get; }

    /// <summary>Builds the planes of <paramref name="trits"/> (each -1, 0 or +1).</summary>
    public BitPlaneVector(ReadOnlySpan<sbyte> trits)
    {
        Length = trits.Length;
        int words = (trits.Length + 63) / 64;
        Plus = new ulong[words]; Minus = new ulong[words];
        for (int j = 0; j < trits.Length; j++)
        {
            int v = trits[j];
            if (v == 1) Plus[j >> 6] |= 1UL << (j & 63);
            else if (v == -1) Minus[j >> 6] |= 1UL << (j & 63);
            else if (v != 0) throw new ArgumentException($"trits[{j}] = {v}: a trit is -1, 0 or +1", nameof(trits));
        }
    }

    /// <summary>The trits back.</summary>
    public sbyte[] ToTrits()
    {
        var t = new sbyte[Length];
        for (int j = 0; j < Length; j++)
            t[j] = (sbyte)((int)(Plus[j >> 6] >> (j & 63) & 1) - (int)(Minus[j >> 6] >> (j & 63) & 1));
        return t;
    }

    /// <summary>Ternary x ternary dot product by popcount.</summary>
    public static int Dot(BitPlaneVector a, BitPlaneVector b)
    {
        ArgumentNullException.ThrowIfNull(a); ArgumentNullException.ThrowIfNull(b);
        if (a.Length != b.Length) throw new ArgumentException($"lengths differ: {a.Length} and {b.Length}");
        return Dot(a.Plus, a.Minus, b.Plus, b.Minus);
    }

    /// <summary>Popcount dot product of plane words (all four spans the same length).</summary>
    public static int Dot(ReadOnlySpan<ulong> ap, ReadOnlySpan<ulong> am, ReadOnlySpan<ulong> bp, ReadOnlySpan<ulong> bm)
    {
        int n = ap.Length;
        if (am.Length != n || bp.Length != n || bm.Length != n) throw new ArgumentException("bit planes differ in length");
        int same = 0, diff = 0;
        for (int i = 0; i < n; i++)
        {
            same += BitOperations.PopCount((ap[i] & bp[i]) | (am[i] & bm[i]));
            diff += BitOperations.PopCount((ap[i] & bm[i]) | (am[i] & bp[i]));
        }
        return same - diff;
    }

    /// <summary>Reference: the same dot product on the trits, for tests.</summary>
    internal static int DotReference(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        int s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }
}
