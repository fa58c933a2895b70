namespace Rotor.Index;

/// <summary>
/// Clustered synthetic vectors for tests and benchmarks (real embeddings come later): <c>clusters</c> centres drawn
/// from N(0, I), each vector a centre plus N(0, spread^2 I) noise, so that neighbours are mostly, not only, in the
/// same cluster, as with sentence embeddings. Deterministic for a seed.
/// </summary>
public static class SyntheticVectors
{
    /// <summary>Row-major (count, dimensions) vectors.</summary>
    public static float[] Clustered(int count, int dimensions, int clusters, int seed, float spread = 0.75f)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(dimensions, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(clusters, 1);
        var rng = new Random(seed);
        var centres = new float[clusters * dimensions];
        for (int i = 0; i < centres.Length; i++) centres[i] = Gaussian(rng);
        var data = new float[(long)count * dimensions];
        int blocks = (count + 4095) / 4096;
        Parallel.For(0, blocks, b =>
        {
            var r = new Random(HashCode.Combine(seed, b));
            int end = Math.Min(count, (b + 1) * 4096);
            for (int i = b * 4096; i < end; i++)
            {
                int c = r.Next(clusters);
                for (int j = 0; j < dimensions; j++)
                    data[(long)i * dimensions + j] = centres[c * dimensions + j] + spread * Gaussian(r);
            }
        });
        return data;
    }

    /// <summary>A standard normal sample (Box-Muller).</summary>
    public static float Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
}
