//! The in-memory dataset every other module consumes: pixels in [0,1], NCHW, f32.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// Label value for samples without a class (OOD sets, noise).
pub const NO_LABEL: i64 = -1;

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

    /// Checks the invariants: sizes agree, every pixel finite and in [0,1], non-empty.
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
            .map_or(0, |m| (m + 1).max(0) as usize)
    }
}
