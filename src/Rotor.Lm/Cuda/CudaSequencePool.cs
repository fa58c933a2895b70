namespace Rotor.Lm.Cuda;

/// <summary>The GPU pool: one <see cref="CudaDecoder"/> whose slots are the sequences, their caches device memory made
/// at once; steps of more rows than the decoder's logits buffer holds run in pieces.</summary>
internal sealed class CudaSequencePool : SequencePool
{
    private readonly CudaDecoder _gpu;
    private int[] _positions = [];

    public CudaSequencePool(CudaModel model, int slots, int contextLength, int maxBatch, bool f16Cache) : base(model.Config, slots, contextLength)
    {
        _gpu = new CudaDecoder(model, slots, contextLength, maxBatch, f16Cache);
    }

    public override bool OnGpu => true;
    public override int SlotsAllocated => Slots;
    /// <summary>The decoder (its graphs, caches and limits).</summary>
    public CudaDecoder Decoder => _gpu;

    public override bool CanSample(SamplingOptions options) => CudaDecoder.SamplesOnDevice(options);

    protected override ReadOnlySpan<float> PrefillCore(int slot, int position, ReadOnlySpan<int> tokens)
        => _gpu.Forward(tokens, slot, position);

    public override bool CanCopyPrefix => true;

    protected override void CopyPrefixCore(int from, int to, int length) => _gpu.CopyPrefix(from, to, length);

    protected override void PrefillAllCore(int slot, int position, ReadOnlySpan<int> tokens, Span<float> allLogits)
        => _gpu.Forward(tokens, slot, position, LogitsMode.All, allLogits);

    private ReadOnlySpan<int> Positions(ReadOnlySpan<int> slots)
    {
        if (_positions.Length < slots.Length) _positions = new int[slots.Length];
        for (int i = 0; i < slots.Length; i++) _positions[i] = Length(slots[i]);
        return _positions.AsSpan(0, slots.Length);
    }

    protected override void StepCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, Span<float> logits)
    {
        var pos = Positions(slots);
        int v = Config.VocabSize;
        for (int b0 = 0; b0 < tokens.Length; b0 += _gpu.MaxStepRows)
        {
            int n = Math.Min(_gpu.MaxStepRows, tokens.Length - b0);
            _gpu.ForwardBatch(tokens.Slice(b0, n), slots.Slice(b0, n), pos.Slice(b0, n), logits.Slice(b0 * v, n * v));
        }
    }

    protected override void StepSampleCore(ReadOnlySpan<int> tokens, ReadOnlySpan<int> slots, ReadOnlySpan<SamplingOptions> sampling, ReadOnlySpan<ulong> seeds, Span<int> next)
    {
        var pos = Positions(slots);
        for (int b0 = 0; b0 < tokens.Length; b0 += _gpu.MaxStepRows)
        {
            int n = Math.Min(_gpu.MaxStepRows, tokens.Length - b0);
            _gpu.DecodeSample(tokens.Slice(b0, n), slots.Slice(b0, n), pos.Slice(b0, n), sampling.Slice(b0, n), seeds.Slice(b0, n), next.Slice(b0, n));
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _gpu.Dispose();
    }
}
