namespace Rotor.Tests;

/// <summary>Seeded random data for kernel tests.</summary>
internal static class TestData
{
    public static sbyte[] Trits(int n, int seed, double zeroShare = 0.33)
    {
        var r = new Random(seed);
        var t = new sbyte[n];
        for (int i = 0; i < n; i++) t[i] = r.NextDouble() < zeroShare ? (sbyte)0 : (sbyte)(r.Next(2) * 2 - 1);
        return t;
    }

    public static sbyte[] Int8(int n, int seed)
    {
        var r = new Random(seed);
        var t = new sbyte[n];
        for (int i = 0; i < n; i++) t[i] = (sbyte)r.Next(-127, 128);
        return t;
    }

    public static float[] Floats(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var t = new float[n];
        for (int i = 0; i < n; i++) t[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return t;
    }
}
