namespace Rotor.Index.Benchmarking;

/// <summary>
/// Clustered synthetic vectors for tests and benchmarks. Sentence embeddings are
/// clustered by topic and have a low intrinsic dimension (tens, not hundreds), so each vector here is
/// <code>x = c_k + spread * B_k z + noise * e</code>
/// with <c>c_k ~ N(0, I)</c> one of <c>clusters</c> centres, <c>B_k</c> a random (D, latent) basis of that cluster
/// (entries N(0, 1/latent)), <c>z ~ N(0, I_latent)</c> and isotropic noise <c>e ~ N(0, I)</c>. Without the latent part
/// (pure isotropic noise around a centre) neighbours inside a cluster are separated by vanishing margins in 384
/// dimensions, which no quantized code (nor real embedding) resembles. Deterministic for a seed.
/// </summary>
public static class SyntheticVectors
{
    /// <summary>Row-major (count, dimensions) vectors.</summary>
    public static float[] Clustered(int count, int dimensions, int clusters, int seed, int latent = 16, float spread = 1f, float noise = 0.15f)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(dimensions, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(clusters, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(latent, 1);
        var rng = new Random(seed);
        var centres = new float[clusters * dimensions];
        for (int i = 0; i < centres.Length; i++) centres[i] = Gaussian(rng);
        var bases = new float[(long)clusters * latent * dimensions]; // (clusters, latent, D)
        float bscale = 1f / MathF.Sqrt(latent);
        for (long i = 0; i < bases.LongLength; i++) bases[i] = bscale * Gaussian(rng);
        var data = new float[(long)count * dimensions];
        int blocks = (count + 4095) / 4096;
        Parallel.For(0, blocks, Rotor.Threading.ThreadCount.Options(), b =>
        {
            var r = new Random(unchecked(seed * 1_000_003 + b)); // HashCode.Combine is randomized per process
            var z = new float[latent];
            int end = Math.Min(count, (b + 1) * 4096);
            for (int i = b * 4096; i < end; i++)
            {
                int c = r.Next(clusters);
                for (int l = 0; l < latent; l++) z[l] = Gaussian(r);
                var x = data.AsSpan((int)((long)i * dimensions), dimensions);
                for (int j = 0; j < dimensions; j++) x[j] = noise * Gaussian(r);
                System.Numerics.Tensors.TensorPrimitives.Add(x, centres.AsSpan(c * dimensions, dimensions), x);
                for (int l = 0; l < latent; l++)
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(bases.AsSpan((int)(((long)c * latent + l) * dimensions), dimensions), spread * z[l], x, x);
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
