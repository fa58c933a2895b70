namespace Rotor.Testing;

/// <summary>Damages a valid file the ways real files get damaged, for the fuzz tests of every file format: a bit
/// flipped, a run of bytes overwritten, the file cut, bytes inserted or removed; one to four edits, reproducible from
/// the generator's seed. Linked into each test project that reads files.</summary>
internal static class FileMutator
{
    public static byte[] Mutate(byte[] good, Random rng)
    {
        var b = new List<byte>(good);
        int edits = 1 + rng.Next(4);
        for (int e = 0; e < edits && b.Count > 0; e++)
        {
            int at = rng.Next(b.Count);
            switch (rng.Next(5))
            {
                case 0: b[at] ^= (byte)(1 << rng.Next(8)); break;
                case 1: for (int i = at; i < Math.Min(b.Count, at + 1 + rng.Next(16)); i++) b[i] = (byte)rng.Next(256); break;
                case 2: b.RemoveRange(at, b.Count - at); break;
                case 3: b.InsertRange(at, Enumerable.Range(0, 1 + rng.Next(8)).Select(_ => (byte)rng.Next(256))); break;
                default: b.RemoveRange(at, Math.Min(b.Count - at, 1 + rng.Next(32))); break;
            }
        }
        return b.ToArray();
    }
}
