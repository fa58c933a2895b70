using System.Buffers.Binary;

namespace Rotor.Lm.Gguf;

/// <summary>
/// Loads TQ2_0 and x86 I2_S tensors straight into Rotor's compute layout, 64 bytes (256 weights) at a time with byte
/// shuffles, without a trit per weight in between: the three layouts all store codes w + 1 in 2 bits, only the order
/// differs. Rotor's byte b (0..63) of a 256-weight block holds weights b, 64 + b, 128 + b, 192 + b at bits 0, 2, 4, 6.
/// <list type="bullet">
/// <item>TQ2_0 (ggml): byte m of half h (32 bytes) holds weight 128h + 32l + m at bits 2l.</item>
/// <item>I2_S (bitnet.cpp, x86): byte j of 128-weight block k holds weight 128k + 32g + j at bits 6 - 2g.</item>
/// </list>
/// Only rows of whole 256-weight blocks take this path (a TQ2_0 row always is; an I2_S row of 320 is not).
/// </summary>
internal static class PackedTernary
{
    /// <summary>A TQ2_0 tensor (rows of cols, cols a multiple of 256) as a ternary matrix with the block scales
    /// <paramref name="scales"/> decided by the caller (one, or one a row).</summary>
    public static TernaryMatrix FromTQ2_0(ReadOnlySpan<byte> data, int rows, int cols, float[] scales, string where)
    {
        const int blockBytes = 66;   // qs[64] then d (f16)
        int blocks = cols / 256;
        unsafe
        {
            fixed (byte* p = data)
            {
                byte* basePtr = p;
                long length = data.Length;
                return TernaryMatrix.FromPackedRows(rows, cols, scales, (r, dst) =>
                {
                    var src = new ReadOnlySpan<byte>(basePtr + (long)r * blocks * blockBytes, blocks * blockBytes);
                    for (int k = 0; k < blocks; k++)
                    {
                        var qs = src.Slice(k * blockBytes, 64);
                        TernaryLayouts.ShuffleHalves(qs[..32], qs[32..], dst.Slice(k * 64, 64), 0, 2, 4, 6);
                    }
                }, where);
            }
        }
    }

    /// <summary>An x86 I2_S tensor (cols a multiple of 256) with its one scale.</summary>
    public static TernaryMatrix FromI2S(ReadOnlySpan<byte> data, int rows, int cols, float scale, string where)
    {
        int rowBytes = cols / 4;
        unsafe
        {
            fixed (byte* p = data)
            {
                byte* basePtr = p;
                return TernaryMatrix.FromPackedRows(rows, cols, [scale], (r, dst) =>
                {
                    var src = new ReadOnlySpan<byte>(basePtr + (long)r * rowBytes, rowBytes);
                    TernaryLayouts.ToI2_256(TernaryLayout.I2S, src, dst);
                }, where);
            }
        }
    }

    /// <summary>The f16 scale bits of TQ2_0 block <paramref name="b"/> and whether it holds a nonzero weight (a byte
    /// other than 0x55, four zero codes).</summary>
    public static (ushort D, bool Live) TQ2_0Block(ReadOnlySpan<byte> data, long b)
    {
        var blk = data.Slice((int)(b * 66), 66);
        return (BinaryPrimitives.ReadUInt16LittleEndian(blk[64..]), blk[..64].ContainsAnyExcept((byte)0x55));
    }
}
