//! PNG images (ISO/IEC 15948): grey, grey+alpha, RGB, RGBA, palette; 1–16 bits. Grey (±alpha)
//! becomes 1 channel, colour (±alpha) 3 channels; alpha is dropped (as PIL's `convert`); 8-bit
//! values are /255, 16-bit /65535. A folder of PNGs is one dataset: either flat (unlabelled) or
//! one sub-folder per class (labels = sorted sub-folder index, as torchvision's `ImageFolder`).

use super::bytes::{Images, read_file};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Decodes one PNG into `[c, h, w]` and its CHW pixels in [0,1].
pub fn decode_png(path: &Path, bytes: &[u8]) -> Result<([usize; 3], Vec<f32>)> {
    if bytes.is_empty() {
        return Err(Error::bad_file(path, "file is empty"));
    }
    let bad = |e: png::DecodingError| Error::bad_file(path, format!("not a valid PNG: {e}"));
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().map_err(bad)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::bad_file(path, "PNG dimensions too large"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let (src_c, keep_c) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        png::ColorType::Indexed => {
            return Err(Error::bad_file(path, "palette PNG was not expanded"));
        }
    };
    let wide = info.bit_depth == png::BitDepth::Sixteen;
    let bpp = if wide { 2 } else { 1 };
    let mut out = vec![0f32; keep_c * h * w];
    for y in 0..h {
        let row = buf
            .get(y * info.line_size..y * info.line_size + w * src_c * bpp)
            .ok_or_else(|| Error::bad_file(path, "PNG row shorter than its width"))?;
        for x in 0..w {
            for k in 0..keep_c {
                let o = (x * src_c + k) * bpp;
                let v = if wide {
                    u16::from_be_bytes([row[o], row[o + 1]]) as f32 / 65535.0
                } else {
                    row[o] as f32 / 255.0
                };
                out[(k * h + y) * w + x] = v;
            }
        }
    }
    Ok(([keep_c, h, w], out))
}

/// Reads one PNG file as a one-image set.
pub fn read_png(path: &Path) -> Result<Images> {
    let (shape, pixels) = decode_png(path, &read_file(path)?)?;
    Ok(Images { shape, pixels })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        v.push(e.path());
    }
    v.sort();
    Ok(v)
}

fn is_png(p: &Path) -> bool {
    p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// The PNG files of a folder and their labels, plus the class names (empty when unlabelled).
pub fn list_png_folder(dir: &Path) -> Result<(Vec<PathBuf>, Vec<i64>, Vec<String>)> {
    let entries = sorted_entries(dir)?;
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let top: Vec<PathBuf> = entries.iter().filter(|p| is_png(p)).cloned().collect();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut classes = Vec::new();
    let mut class_dirs = Vec::new();
    for d in subdirs {
        let pngs: Vec<PathBuf> = sorted_entries(d)?
            .into_iter()
            .filter(|p| is_png(p))
            .collect();
        if !pngs.is_empty() {
            class_dirs.push((d.clone(), pngs));
        }
    }
    if !class_dirs.is_empty() && !top.is_empty() {
        return Err(Error::bad_file(
            dir,
            "holds PNGs both at the top level and in class sub-folders; use one layout",
        ));
    }
    if class_dirs.is_empty() {
        labels.resize(top.len(), super::NO_LABEL);
        files = top;
    } else {
        for (k, (d, pngs)) in class_dirs.into_iter().enumerate() {
            classes.push(
                d.file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            labels.extend(std::iter::repeat_n(k as i64, pngs.len()));
            files.extend(pngs);
        }
    }
    if files.is_empty() {
        return Err(Error::bad_file(dir, "folder holds no .png files"));
    }
    Ok((files, labels, classes))
}

/// Reads a folder of same-sized PNGs (flat or one sub-folder per class) with its labels and
/// the concatenated bytes' SHA-256 (files in sorted order).
pub fn read_png_folder(dir: &Path) -> Result<(Images, Vec<i64>, String)> {
    use sha2::{Digest, Sha256};
    let (files, labels, _) = list_png_folder(dir)?;
    let mut hasher = Sha256::new();
    let mut shape = None;
    let mut pixels = Vec::new();
    for f in &files {
        let bytes = read_file(f)?;
        hasher.update(&bytes);
        let (s, px) = decode_png(f, &bytes)?;
        match shape {
            None => shape = Some(s),
            Some(s0) if s0 != s => {
                return Err(Error::bad_file(
                    f,
                    format!("image is {s:?} (c,h,w) but earlier images in the folder are {s0:?}"),
                ));
            }
            _ => {}
        }
        pixels.extend(px);
    }
    let shape = shape.ok_or_else(|| Error::bad_file(dir, "folder holds no .png files"))?;
    Ok((
        Images { shape, pixels },
        labels,
        hex::encode(hasher.finalize()),
    ))
}

/// Encodes 8- or 16-bit samples as a PNG (used by tests and for writing previews).
pub fn encode_png(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    samples: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut wr = enc
            .write_header()
            .map_err(|e| Error::Internal(format!("PNG encode: {e}")))?;
        wr.write_image_data(samples)
            .map_err(|e| Error::Internal(format!("PNG encode: {e}")))?;
    }
    Ok(out)
}
