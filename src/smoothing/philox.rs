//! Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror & Shaw, "Parallel random
//! numbers: as easy as 1, 2, 3" (SC'11), as in Random123, cuRAND and JAX: 128-bit counter,
//! 64-bit key, ten rounds of two 32×32→64-bit multiplications and a Weyl key schedule.

/// Multipliers of the two S-boxes (Random123's PHILOX_M4x32_0, PHILOX_M4x32_1).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
/// Weyl increments of the key schedule (golden ratio and √3 − 1, Random123's PHILOX_W32_*).
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The high and low 32 bits of the 64-bit product `a·b`.
#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// One Philox round on counter `c` under round key `k`.
#[inline(always)]
fn round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(M0, c[0]);
    let (hi1, lo1) = mulhilo(M1, c[2]);
    [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
}

/// Philox4x32-10 of counter `ctr` under key `key`: four 32-bit words.
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        c = round(c, k);
    }
    c
}

/// The two 64-bit words (y₁·2³² + y₀, y₃·2³² + y₂) of the block [`philox4x32_10`]`(ctr, key)`.
#[inline(always)]
pub fn words(ctr: [u32; 4], key: [u32; 2]) -> (u64, u64) {
    let y = philox4x32_10(ctr, key);
    (
        ((y[1] as u64) << 32) | y[0] as u64,
        ((y[3] as u64) << 32) | y[2] as u64,
    )
}

/// The [`words`] of the N counters (first + j mod 2³², c₁, c₂, c₃), j = 0..N, for
/// `ctr` = (first, c₁, c₂, c₃): first words in the first array, second words in the second.
#[inline(always)]
pub(super) fn words_n<const N: usize>(key: [u32; 2], ctr: [u32; 4]) -> ([u64; N], [u64; N]) {
    let (mut w1, mut w2) = ([0u64; N], [0u64; N]);
    for j in 0..N {
        (w1[j], w2[j]) = words([ctr[0].wrapping_add(j as u32), ctr[1], ctr[2], ctr[3]], key);
    }
    (w1, w2)
}

/// [`words_n`] (N a multiple of 8) into `w1` and `w2`, the same bits, in AVX-512 intrinsics.
///
/// Eight blocks per 512-bit register, one 32-bit word in the low half of each 64-bit lane:
/// `vpmuludq` gives the full products, and the high halves come down by a dword shuffle rather
/// than a shift. Both 512-bit shifts and multiplies issue on one port of Intel cores, shuffles on
/// another, so this takes ~35 % less time than the autovectorised scalar rounds (which shift);
/// the shuffle leaves garbage in the upper halves, which `vpmuludq` ignores and the final
/// assembly of the words drops.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn words_x8_avx512<const N: usize>(
    key: [u32; 2],
    ctr: [u32; 4],
    w1: &mut [u64; N],
    w2: &mut [u64; N],
) {
    use std::arch::x86_64::*;
    const { assert!(N.is_multiple_of(8)) };
    let (m0, m1) = (_mm512_set1_epi64(M0 as i64), _mm512_set1_epi64(M1 as i64));
    let low = _mm512_set1_epi64(0xFFFF_FFFF);
    let lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    for g in 0..N / 8 {
        let first = _mm512_set1_epi64(ctr[0].wrapping_add(8 * g as u32) as i64);
        let mut c0 = _mm512_and_si512(_mm512_add_epi64(first, lanes), low);
        let mut c1 = _mm512_set1_epi64(ctr[1] as i64);
        let mut c2 = _mm512_set1_epi64(ctr[2] as i64);
        let mut c3 = _mm512_set1_epi64(ctr[3] as i64);
        let mut k = key;
        for r in 0..10 {
            if r > 0 {
                k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
            }
            // (hi, lo) of M0·c0 and M1·c2: lo in the low half of the product, hi moved there.
            let p0 = _mm512_mul_epu32(c0, m0);
            let p1 = _mm512_mul_epu32(c2, m1);
            let hi0 = _mm512_shuffle_epi32::<0xF5>(p0);
            let hi1 = _mm512_shuffle_epi32::<0xF5>(p1);
            let k0 = _mm512_set1_epi64(k[0] as i64);
            let k1 = _mm512_set1_epi64(k[1] as i64);
            (c0, c1, c2, c3) = (
                _mm512_ternarylogic_epi64::<0x96>(hi1, c1, k0),
                p1,
                _mm512_ternarylogic_epi64::<0x96>(hi0, c3, k1),
                p0,
            );
        }
        let a = _mm512_or_si512(_mm512_slli_epi64::<32>(c1), _mm512_and_si512(c0, low));
        let b = _mm512_or_si512(_mm512_slli_epi64::<32>(c3), _mm512_and_si512(c2, low));
        // SAFETY: g < N / 8, so lanes 8g..8g + 8 lie inside both arrays.
        unsafe {
            _mm512_storeu_si512(w1.as_mut_ptr().add(8 * g).cast(), a);
            _mm512_storeu_si512(w2.as_mut_ptr().add(8 * g).cast(), b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::philox4x32_10;

    /// Known answers: the three `philox4x32 10` lines of Random123's `tests/kat_vectors`
    /// (Random123 1.09/1.14, D. E. Shaw Research; columns counter[4], key[2], output[4]), as also
    /// reproduced in several public ports; checked here against an independent implementation.
    #[test]
    fn random123_known_answers() {
        let kat: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
            ),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (ctr, key, want) in kat {
            assert_eq!(
                philox4x32_10(ctr, key),
                want,
                "ctr {ctr:08x?} key {key:08x?}"
            );
        }
    }

    /// The AVX-512 words equal the scalar function's, counter by counter, for random keys and
    /// counters and for a first counter word that wraps past 2³² inside a group.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_words_equal_the_scalar_rounds() {
        use rand::{RngCore, SeedableRng};
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(30);
        let mut cases: Vec<([u32; 2], [u32; 4])> = vec![
            ([0; 2], [0; 4]),
            ([u32::MAX; 2], [u32::MAX - 3, u32::MAX, u32::MAX, u32::MAX]),
        ];
        for _ in 0..2000 {
            let mut r = || rng.next_u32();
            cases.push(([r(), r()], [r(), r(), r(), r()]));
        }
        for (key, ctr) in cases {
            let (mut w1, mut w2) = ([0u64; 32], [0u64; 32]);
            // SAFETY: AVX-512 F support was just detected.
            unsafe { super::words_x8_avx512(key, ctr, &mut w1, &mut w2) };
            for j in 0..32 {
                let y = philox4x32_10([ctr[0].wrapping_add(j as u32), ctr[1], ctr[2], ctr[3]], key);
                assert_eq!(
                    w1[j],
                    (y[1] as u64) << 32 | y[0] as u64,
                    "key {key:x?} ctr {ctr:x?} j {j}"
                );
                assert_eq!(
                    w2[j],
                    (y[3] as u64) << 32 | y[2] as u64,
                    "key {key:x?} ctr {ctr:x?} j {j}"
                );
            }
        }
    }
}
