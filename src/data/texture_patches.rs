//! Texture patches: non-overlapping `p×p` tiles cut row by row from grey texture images (the
//! scikit-image brick, grass and gravel photographs, 512×512 → 18×18 = 324 tiles of 28×28 each,
//! 972 in all); the label is the index of the source texture.

/// Cuts the non-overlapping `p×p` tiles of one `h×w` grey image, row-major; the right and
/// bottom remainders (`w mod p`, `h mod p`) are dropped.
pub fn tiles(img: &[f32], h: usize, w: usize, p: usize) -> Vec<f32> {
    if p == 0 || img.len() != h * w {
        return Vec::new();
    }
    let mut out = Vec::with_capacity((h / p) * (w / p) * p * p);
    for ty in 0..h / p {
        for tx in 0..w / p {
            for y in 0..p {
                let row = (ty * p + y) * w + tx * p;
                out.extend_from_slice(&img[row..row + p]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiles_are_exact_and_disjoint() {
        let img: Vec<f32> = (0..30).map(|i| i as f32).collect(); // 5×6
        let t = super::tiles(&img, 5, 6, 2); // 2 rows × 3 cols of 2×2
        assert_eq!(t.len(), 6 * 4);
        assert_eq!(&t[..4], &[0.0, 1.0, 6.0, 7.0]);
        assert_eq!(&t[4..8], &[2.0, 3.0, 8.0, 9.0]);
        assert_eq!(&t[12..16], &[12.0, 13.0, 18.0, 19.0]);
    }
}
