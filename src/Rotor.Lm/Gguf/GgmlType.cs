namespace Rotor.Lm.Gguf;

/// <summary>
/// Tensor storage types, with the ids ggml (llama.cpp) and bitnet.cpp write into GGUF files. The values are the file
/// format: never renumber them. Rotor decodes the types that have a row in <see cref="GgmlTypeTraits"/>; the other ids
/// are named here only so that errors can say what a file holds.
/// </summary>
public enum GgmlType : uint
{
    /// <summary>32-bit IEEE float.</summary>
    F32 = 0,
    /// <summary>16-bit IEEE float.</summary>
    F16 = 1,
    /// <summary>Blocks of 32: f16 scale, 32 4-bit values biased by 8.</summary>
    Q4_0 = 2,
    /// <summary>ggml Q4_1 (size known, not decoded).</summary>
    Q4_1 = 3,
    /// <summary>ggml Q5_0 (size known, not decoded).</summary>
    Q5_0 = 6,
    /// <summary>ggml Q5_1 (size known, not decoded).</summary>
    Q5_1 = 7,
    /// <summary>Blocks of 32: f16 scale, 32 int8 values.</summary>
    Q8_0 = 8,
    /// <summary>ggml Q8_1 (size known, not decoded).</summary>
    Q8_1 = 9,
    /// <summary>ggml Q2_K (size known, not decoded).</summary>
    Q2_K = 10,
    /// <summary>ggml Q3_K (size known, not decoded).</summary>
    Q3_K = 11,
    /// <summary>ggml Q4_K (size known, not decoded).</summary>
    Q4_K = 12,
    /// <summary>ggml Q5_K (size known, not decoded).</summary>
    Q5_K = 13,
    /// <summary>Super-blocks of 256: 16 sub-blocks of 16 6-bit values with int8 scales and an f16 scale.</summary>
    Q6_K = 14,
    /// <summary>ggml Q8_K (size known, not decoded).</summary>
    Q8_K = 15,
    /// <summary>ggml IQ2_XXS (size known, not decoded).</summary>
    IQ2_XXS = 16,
    /// <summary>ggml IQ2_XS (size known, not decoded).</summary>
    IQ2_XS = 17,
    /// <summary>ggml IQ3_XXS (size known, not decoded).</summary>
    IQ3_XXS = 18,
    /// <summary>ggml IQ1_S (size known, not decoded).</summary>
    IQ1_S = 19,
    /// <summary>ggml IQ4_NL (size known, not decoded).</summary>
    IQ4_NL = 20,
    /// <summary>ggml IQ3_S (size known, not decoded).</summary>
    IQ3_S = 21,
    /// <summary>ggml IQ2_S (size known, not decoded).</summary>
    IQ2_S = 22,
    /// <summary>ggml IQ4_XS (size known, not decoded).</summary>
    IQ4_XS = 23,
    /// <summary>8-bit integer (size known, not decoded).</summary>
    I8 = 24,
    /// <summary>16-bit integer (size known, not decoded).</summary>
    I16 = 25,
    /// <summary>32-bit integer (size known, not decoded).</summary>
    I32 = 26,
    /// <summary>64-bit integer (size known, not decoded).</summary>
    I64 = 27,
    /// <summary>64-bit float (size known, not decoded).</summary>
    F64 = 28,
    /// <summary>ggml IQ1_M (size known, not decoded).</summary>
    IQ1_M = 29,
    /// <summary>bfloat16: the high half of an f32.</summary>
    BF16 = 30,
    /// <summary>Ternary, blocks of 256: 48 bytes of five trits each, 4 bytes of four trits each, f16 scale (1.6875 bpw).</summary>
    TQ1_0 = 34,
    /// <summary>Ternary, blocks of 256: 64 bytes of four 2-bit trits each, f16 scale (2.0625 bpw).</summary>
    TQ2_0 = 35,
    /// <summary>bitnet.cpp's ternary type: 2 bits a weight in blocks of 128 (x86 layout), and one f32 scale for the
    /// whole tensor in a 32-byte tail after the n/4 data bytes.</summary>
    I2_S = 36,
    /// <summary>bitnet.cpp's activation type (never stored in model files).</summary>
    I8_S = 37,
    /// <summary>bitnet.cpp's TL1 lookup-table layout (Arm kernels); not decoded.</summary>
    TL1 = 38,
    /// <summary>bitnet.cpp's TL2 lookup-table layout (x86 kernels); the same id is MXFP4 in later ggml; not decoded.</summary>
    TL2 = 39,
}
