using System.Runtime.Intrinsics;

namespace Rotor.Cli.Bench;

/// <summary>Measures memory read bandwidth: a vectorized sum over a buffer far larger than the caches.</summary>
internal static unsafe class MemoryBandwidth
{
    public static double ReadGbps(int threads, long bytes = 512L << 20)
    {
        var buf = GC.AllocateUninitializedArray<byte>((int)bytes, pinned: true);
        new Random(1).NextBytes(buf.AsSpan(0, 4096));
        for (long i = 4096; i < bytes; i += 4096) buf.AsSpan(0, 4096).CopyTo(buf.AsSpan((int)i, (int)Math.Min(4096, bytes - i)));
        long sink = 0;
        double ms = Timer.MedianMs(() =>
        {
            if (threads == 1) { sink ^= Sum(buf, 0, bytes); return; }
            long per = bytes / threads / 64 * 64;
            var sums = new long[threads];
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads },
                t => sums[t] = Sum(buf, t * per, t == threads - 1 ? bytes - t * per : per));
            foreach (long v in sums) sink ^= v;   // only kept alive; LINQ's Sum would throw on overflow
        }, minReps: 5, budgetMs: 1500);
        GC.KeepAlive(sink);
        return bytes / (ms / 1000) / 1e9;
    }

    /// <summary>
    /// The memory limit measured at the same moments as a cold product: after each timed product, one read of a
    /// <see cref="SampleBytes"/> slice of a buffer three times that size (after every eighth product, see <see cref="SampleEvery8"/>) (so never in the 32 MiB L3) on the same number of
    /// threads. Host noise on these machines moves the bandwidth by tens of percent within seconds; a cold product's share of
    /// the limit is therefore its bandwidth over the median of these paired samples.
    /// </summary>
    internal sealed class Sampler(int threads)
    {
        public const long SampleBytes = 32L << 20;
        private readonly byte[] _buf = Filled(3 * SampleBytes);
        private readonly List<double> _gbps = [];
        private int _next;
        private long _sink;

        /// <summary>A sample after every eighth call: a sample lasts about a millisecond, longer than the worker pool
        /// spins, so the product right after one finds its workers asleep (as no decoder's back-to-back layers do);
        /// sampling one call in eight keeps that out of the product's median.</summary>
        public void SampleEvery8()
        {
            if (_calls++ % 8 == 7) Sample();
        }

        private int _calls;

        public void Sample()
        {
            long from = (_next++ % 3) * SampleBytes;
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            if (threads == 1) _sink += Sum(_buf, from, SampleBytes);
            else
            {
                long per = SampleBytes / threads / 64 * 64;
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads },
                    t => Interlocked.Add(ref _sink, Sum(_buf, from + t * per, t == threads - 1 ? SampleBytes - t * per : per)));
            }
            _gbps.Add(SampleBytes / System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds / 1e9);
        }

        /// <summary>Median GB/s of the samples so far, then starts afresh.</summary>
        public double TakeMedianGbps()
        {
            if (_gbps.Count == 0) throw new InvalidOperationException("no bandwidth sample taken");
            _gbps.Sort();
            double m = _gbps[_gbps.Count / 2];
            _gbps.Clear();
            return m;
        }
    }

    private static byte[] Filled(long bytes)
    {
        var buf = GC.AllocateUninitializedArray<byte>((int)bytes, pinned: true);
        new Random(1).NextBytes(buf.AsSpan(0, 4096));
        for (long i = 4096; i < bytes; i += 4096) buf.AsSpan(0, 4096).CopyTo(buf.AsSpan((int)i, (int)Math.Min(4096, bytes - i)));
        return buf;
    }

    /// <summary>Sums the range as two halves read side by side: two sequential streams give one core more
    /// requests in flight than one (the same holds for the GEMV, which reads its rows that way), so the limit it sets is
    /// the most a core reads, not what one stream does.</summary>
    private static long Sum(byte[] buf, long from, long count)
    {
        fixed (byte* p0 = buf)
        {
            // the second stream starts 37 cache lines past the middle: streams a power of two apart fall on the same
            // DRAM banks, and read slower together than one alone
            long half = (count - 37 * 64) / 2 / 128 * 128;
            byte* p = p0 + from, q = p + half + 37 * 64, end = p + half;
            Vector256<ulong> a = default, b = default, c = default, d = default;
            for (; p < end; p += 128, q += 128)
            {
                a += Vector256.Load((ulong*)p) + Vector256.Load((ulong*)(p + 32));
                b += Vector256.Load((ulong*)q) + Vector256.Load((ulong*)(q + 32));
                c += Vector256.Load((ulong*)(p + 64)) + Vector256.Load((ulong*)(p + 96));
                d += Vector256.Load((ulong*)(q + 64)) + Vector256.Load((ulong*)(q + 96));
            }
            return unchecked((long)Vector256.Sum(a + b + c + d));
        }
    }
}
