//! The in-memory dataset every other module consumes: pixels in [0,1], NCHW, f32.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// Label value for samples without a class (OOD sets, noise).
pub const NO_LABEL: i64 = -1;

/// The largest class index a dataset may hold (2¹⁷ − 1: ImageNet-21k has 21 841 classes), so a
/// damaged label is an error rather than a classifier head too large to allocate.
pub const MAX_LABEL: i64 = (1 << 17) - 1;

/// A set of images with pixels in [0,1] (pixel units: every radius and ε refers to these values).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Canonical name, e.g. `mnist:test`, `noise-gauss:test`, `path:/x/y.npy`.
    pub name: String,
    /// `len() * c * h * w` values in [0,1], row-major NCHW.
    pub images: Vec<f32>,
    /// One label per image; [`NO_LABEL`] when the set has no classes.
    pub labels: Vec<i64>,
    /// `[c, h, w]` of every image.
    pub shape: [usize; 3],
    /// SHA-256 (hex) of the source bytes, or of the generator parameters for generated sets.
    pub sha256: String,
    /// The class filter that selected these images (`NAME#CLASSES`), if any.
    pub selection: Option<super::class_filter::ClassSelection>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (`c*h*w`).
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.images[i * d..(i + 1) * d]
    }

    /// Checks the invariants: sizes agree, every pixel finite and in [0,1], labels at most
    /// [`MAX_LABEL`], non-empty.
    pub fn validate(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::BadInput(format!("dataset {} is empty", self.name)));
        }
        if self.images.len() != self.len() * self.dim() {
            return Err(Error::Internal(format!(
                "dataset {}: {} pixel values for {} images of shape {:?}",
                self.name,
                self.images.len(),
                self.len(),
                self.shape
            )));
        }
        if let Some(pos) = self
            .images
            .iter()
            .position(|v| !v.is_finite() || *v < 0.0 || *v > 1.0)
        {
            return Err(Error::BadInput(format!(
                "dataset {}: pixel {} of image {} is {} (pixels must be finite and in [0,1])",
                self.name,
                pos % self.dim(),
                pos / self.dim(),
                self.images[pos]
            )));
        }
        if let Some(&l) = self.labels.iter().find(|&&l| l > MAX_LABEL) {
            return Err(Error::BadInput(format!(
                "dataset {}: label {l} is above {MAX_LABEL}; labels are class indices 0..K−1 (−1 for unlabelled images)",
                self.name
            )));
        }
        Ok(())
    }

    /// A `(len(idx), c, h, w)` f32 tensor of the selected images.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<Tensor> {
        let d = self.dim();
        let mut buf = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            buf.extend_from_slice(self.image(i));
        }
        let [c, h, w] = self.shape;
        Ok(Tensor::from_vec(buf, (idx.len(), c, h, w), device)?)
    }

    /// Labels of the selected images as a u32 tensor (unlabelled images are an error).
    pub fn batch_labels(&self, idx: &[usize], device: &Device) -> Result<Tensor> {
        let mut out = Vec::with_capacity(idx.len());
        for &i in idx {
            let l = self.labels[i];
            if l < 0 {
                return Err(Error::BadInput(format!(
                    "dataset {} has no class labels; it cannot be used as in-distribution training data",
                    self.name
                )));
            }
            out.push(l as u32);
        }
        Ok(Tensor::from_vec(out, idx.len(), device)?)
    }

    /// The first `n` images (or all when `n >= len`).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            name: self.name.clone(),
            images: self.images[..n * self.dim()].to_vec(),
            labels: self.labels[..n].to_vec(),
            shape: self.shape,
            sha256: self.sha256.clone(),
            selection: self.selection.clone(),
        }
    }

    /// Number of classes: 1 + the largest label (0 for unlabelled sets).
    pub fn num_classes(&self) -> usize {
        self.labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m.saturating_add(1).max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(labels: &[i64]) -> Dataset {
        Dataset {
            name: "t:test".into(),
            images: vec![0.5; labels.len()],
            labels: labels.to_vec(),
            shape: [1, 1, 1],
            sha256: "s".into(),
            selection: None,
        }
    }

    /// A label above the cap (2⁴⁰ in a CSV once asked for a 2-PB classifier head) is an error
    /// naming it; the largest i64 label does not overflow the class count.
    #[test]
    fn labels_above_the_cap_are_refused() {
        assert!(ds(&[0, MAX_LABEL, NO_LABEL]).validate().is_ok());
        let e = ds(&[0, 1 << 40]).validate().unwrap_err().to_string();
        assert!(e.contains("label 1099511627776 is above 131071"), "{e}");
        assert_eq!(ds(&[i64::MAX]).num_classes(), i64::MAX as usize);
        assert_eq!(ds(&[NO_LABEL]).num_classes(), 0);
    }
}
