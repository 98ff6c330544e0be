//! One ONNX operator with a single computed input → oodcert layers (ONNX operator semantics,
//! opset 11 and later, https://onnx.ai/onnx/operators/). Every attribute is checked: an unknown
//! one, or a value outside what the layer computes, is an error naming the node.

use super::constants::{Attrs, Const};
use super::graph::{OnnxGraph, SUPPORTED_OPS, Shape, label};
use crate::error::{Error, Result};
use crate::model::arch::GraphLayer;
use crate::model::layers::{BN_EPS, window_out};

/// What one converted node gives: its layers, its output tensor and the output shape.
pub struct Converted {
    pub layers: Vec<GraphLayer>,
    pub output: String,
    pub shape: Shape,
}

fn map_shape(shape: Shape, lab: &str) -> Result<[usize; 3]> {
    match shape {
        Shape::Map(s) => Ok(s),
        Shape::Flat(d) => Err(Error::BadInput(format!(
            "{lab}: needs a (N, C, H, W) input, got a flat (N, {d}) tensor"
        ))),
    }
}

/// `[top, left, bottom, right]` from ONNX 2-d `pads` `[x1_begin, x2_begin, x1_end, x2_end]`.
fn pads4(p: &[usize]) -> [usize; 4] {
    [p[0], p[1], p[2], p[3]]
}

impl OnnxGraph<'_> {
    fn weight(&self, i: usize, slot: usize, what: &str) -> Result<&Const> {
        let lab = label(self.nodes, i);
        let name = self.nodes[i].input.get(slot).filter(|s| !s.is_empty());
        name.and_then(|n| self.constant(n)).ok_or_else(|| {
            Error::BadInput(format!(
                "{lab}: input {slot} ({what}) must be a constant (an initializer); computed \
                 weights are not supported"
            ))
        })
    }

    fn floats_of(&self, i: usize, slot: usize, what: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let c = self.weight(i, slot, what)?;
        let v = c.floats().ok_or_else(|| {
            Error::BadInput(format!(
                "{}: {what} must be a floating-point tensor",
                label(self.nodes, i)
            ))
        })?;
        Ok((c.dims.clone(), v.to_vec()))
    }

    /// Fails when an output of node `i` other than the first is read by another node.
    fn only_first_output(&self, i: usize) -> Result<()> {
        for extra in self.nodes[i]
            .output
            .iter()
            .skip(1)
            .filter(|s| !s.is_empty())
        {
            if !self.uses(extra).is_empty() || *extra == self.output {
                return Err(Error::BadInput(format!(
                    "{}: its output `{extra}` is used; only the first output is supported",
                    label(self.nodes, i)
                )));
            }
        }
        Ok(())
    }

    /// Converts node `i`, whose computed input has `shape`, into layers.
    pub fn convert(&mut self, i: usize, shape: Shape) -> Result<Converted> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        let op = n.op_type.clone().unwrap_or_default();
        let out = n
            .output
            .first()
            .cloned()
            .ok_or_else(|| Error::BadInput(format!("{lab}: has no output")))?;
        self.only_first_output(i)?;
        let dyn_slots = self.dynamic_slots(i);
        if dyn_slots != [0] {
            return Err(Error::BadInput(format!(
                "{lab}: expected exactly one computed input, in position 0 (got positions \
                 {dyn_slots:?}); supported operators: {SUPPORTED_OPS}"
            )));
        }
        self.done[i] = true;
        let (layers, shape) = match op.as_str() {
            "Relu" => {
                Attrs::new(n, &lab, &[])?;
                (vec![GraphLayer::Relu], shape)
            }
            "Conv" => self.conv(i, shape)?,
            "BatchNormalization" => self.batch_norm(i, shape)?,
            "MaxPool" | "AveragePool" => self.pool(i, shape)?,
            "GlobalAveragePool" => {
                Attrs::new(n, &lab, &[])?;
                let [c, _, _] = map_shape(shape, &lab)?;
                (vec![GraphLayer::GlobalAvgPool], Shape::Flat(c))
            }
            "Flatten" => {
                let a = Attrs::new(n, &lab, &["axis"])?;
                if a.int("axis", 1) != 1 {
                    return Err(Error::BadInput(format!(
                        "{lab}: Flatten with axis {} is not supported (axis 1: (N, -1))",
                        a.int("axis", 1)
                    )));
                }
                (vec![GraphLayer::Flatten], Shape::Flat(shape.numel()))
            }
            "Reshape" => self.reshape(i, shape)?,
            "Pad" => self.pad(i, shape)?,
            "Gemm" => self.gemm(i, shape)?,
            "MatMul" => {
                let (layers, shape, bias_out) = self.matmul(i, shape)?;
                return Ok(Converted {
                    layers,
                    output: bias_out.unwrap_or(out),
                    shape,
                });
            }
            "Sub" | "Div" | "Mul" | "Add" => {
                return Err(Error::BadInput(format!(
                    "{lab}: {op} by a constant is supported only as the input normalisation \
                     (a chain of Sub/Div/Mul/Add by per-channel constants right after the \
                     graph input)"
                )));
            }
            _ => {
                return Err(Error::BadInput(format!(
                    "{lab}: operator `{op}` is not supported (supported: {SUPPORTED_OPS})"
                )));
            }
        };
        Ok(Converted {
            layers,
            output: out,
            shape,
        })
    }

    fn conv(&mut self, i: usize, shape: Shape) -> Result<(Vec<GraphLayer>, Shape)> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        let a = Attrs::new(
            n,
            &lab,
            &[
                "kernel_shape",
                "strides",
                "pads",
                "dilations",
                "group",
                "auto_pad",
            ],
        )?;
        if a.int("group", 1) != 1 {
            return Err(Error::BadInput(format!(
                "{lab}: group = {} is not supported (groups 1 only)",
                a.int("group", 1)
            )));
        }
        let [c, h, w] = map_shape(shape, &lab)?;
        let (wd, wv) = self.floats_of(i, 1, "weight")?;
        if wd.len() != 4 || wd[1] != c {
            return Err(Error::BadInput(format!(
                "{lab}: weight of shape {wd:?} does not fit a {c}-channel input (2-d \
                 convolutions, groups 1)"
            )));
        }
        let (c_out, kh, kw) = (wd[0], wd[2], wd[3]);
        if a.sizes("dilations", 2, 1)? != [1, 1] {
            return Err(Error::BadInput(format!(
                "{lab}: dilation ≠ 1 is not supported"
            )));
        }
        let auto_pad = a.string("auto_pad", "NOTSET");
        if !(auto_pad == "NOTSET" || auto_pad == "VALID") {
            return Err(Error::BadInput(format!(
                "{lab}: auto_pad = {auto_pad} is not supported (NOTSET with explicit pads, or \
                 VALID)"
            )));
        }
        if let Some(k) = a.get("kernel_shape")
            && k.ints != [kh as i64, kw as i64]
        {
            return Err(Error::BadInput(format!(
                "{lab}: kernel_shape {:?} differs from the weight's {kh}×{kw}",
                k.ints
            )));
        }
        let s = a.sizes("strides", 2, 1)?;
        if s[0] != s[1] || s[0] == 0 {
            return Err(Error::BadInput(format!(
                "{lab}: strides {s:?} are not supported (equal strides > 0 on both axes)"
            )));
        }
        let p = pads4(&a.sizes("pads", 4, 0)?);
        let mut layers = Vec::new();
        let (mut hp, mut wp, mut padding) = (h, w, p[0]);
        if p.iter().any(|&v| v != p[0]) {
            layers.push(GraphLayer::Pad { pads: p });
            (hp, wp, padding) = (h + p[0] + p[2], w + p[1] + p[3], 0);
        }
        let (Some(ho), Some(wo)) = (
            window_out(hp, kh, s[0], padding),
            window_out(wp, kw, s[0], padding),
        ) else {
            return Err(Error::BadInput(format!(
                "{lab}: a {kh}×{kw} kernel does not fit the {h}×{w} input"
            )));
        };
        let name = self.fresh_name("conv");
        self.put(format!("{name}.weight"), &wd, wv)?;
        let bias = match self.nodes[i].input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => {
                let (bd, bv) = self.floats_of(i, 2, "bias")?;
                if bv.len() != c_out {
                    return Err(Error::BadInput(format!(
                        "{lab}: bias of shape {bd:?}, expected [{c_out}]"
                    )));
                }
                self.put(format!("{name}.bias"), &[c_out], bv)?;
                true
            }
            None => false,
        };
        layers.push(GraphLayer::Conv {
            name,
            c_in: c,
            c_out,
            kernel: [kh, kw],
            stride: s[0],
            padding,
            bias,
        });
        Ok((layers, Shape::Map([c_out, ho, wo])))
    }

    fn batch_norm(&mut self, i: usize, shape: Shape) -> Result<(Vec<GraphLayer>, Shape)> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        let a = Attrs::new(
            n,
            &lab,
            &["epsilon", "momentum", "training_mode", "spatial"],
        )?;
        if a.int("training_mode", 0) != 0 || a.int("spatial", 1) != 1 {
            return Err(Error::BadInput(format!(
                "{lab}: only inference BatchNormalization (training_mode 0, spatial 1) is \
                 supported; export in eval mode"
            )));
        }
        let [c, _, _] = map_shape(shape, &lab)?;
        let mut parts = Vec::new();
        for (slot, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
            let (d, v) = self.floats_of(i, slot, what)?;
            if v.len() != c {
                return Err(Error::BadInput(format!(
                    "{lab}: {what} of shape {d:?} for {c} channels"
                )));
            }
            parts.push(v);
        }
        // y = γ(x − μ)/√(σ² + ε) + β: our layer uses PyTorch's ε = 1e-5, so σ² + ε − 1e-5 is
        // stored as the running variance (the same evaluation map).
        let eps = a.float("epsilon", 1e-5) as f64;
        let var: Vec<f32> = parts[3]
            .iter()
            .map(|&v| (v as f64 + eps - BN_EPS) as f32)
            .collect();
        if var.iter().any(|&v| v < 0.0) {
            return Err(Error::BadInput(format!(
                "{lab}: epsilon {eps} below 1e-5 with a running variance under 1e-5 − epsilon \
                 cannot be represented"
            )));
        }
        let name = self.fresh_name("bn");
        self.put(format!("{name}.weight"), &[c], parts[0].clone())?;
        self.put(format!("{name}.bias"), &[c], parts[1].clone())?;
        self.put(format!("{name}.running_mean"), &[c], parts[2].clone())?;
        self.put(format!("{name}.running_var"), &[c], var)?;
        Ok((vec![GraphLayer::BatchNorm { name, channels: c }], shape))
    }

    fn pool(&mut self, i: usize, shape: Shape) -> Result<(Vec<GraphLayer>, Shape)> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        let is_max = n.op_type.as_deref() == Some("MaxPool");
        let known: &[&str] = if is_max {
            &[
                "kernel_shape",
                "strides",
                "pads",
                "ceil_mode",
                "dilations",
                "storage_order",
                "auto_pad",
            ]
        } else {
            &[
                "kernel_shape",
                "strides",
                "pads",
                "ceil_mode",
                "dilations",
                "count_include_pad",
                "auto_pad",
            ]
        };
        let a = Attrs::new(n, &lab, known)?;
        let [c, h, w] = map_shape(shape, &lab)?;
        let k = a.sizes("kernel_shape", 2, 0)?;
        if a.get("kernel_shape").is_none() || k.contains(&0) {
            return Err(Error::BadInput(format!(
                "{lab}: needs a 2-d kernel_shape > 0"
            )));
        }
        let s = a.sizes("strides", 2, 1)?;
        if s.contains(&0) {
            return Err(Error::BadInput(format!(
                "{lab}: strides {s:?} are not supported (strides > 0 on both axes)"
            )));
        }
        let p = pads4(&a.sizes("pads", 4, 0)?);
        let auto_pad = a.string("auto_pad", "NOTSET");
        if a.int("ceil_mode", 0) != 0
            || a.sizes("dilations", 2, 1)? != [1, 1]
            || !(auto_pad == "NOTSET" || auto_pad == "VALID")
        {
            return Err(Error::BadInput(format!(
                "{lab}: ceil_mode, dilation ≠ 1 and auto_pad SAME are not supported (floor \
                 mode, explicit pads)"
            )));
        }
        let mut layers = Vec::new();
        let (kernel, stride) = ([k[0], k[1]], [s[0], s[1]]);
        let (mut hh, mut ww) = (h, w);
        let pad = if is_max {
            if p[0] != p[2] || p[1] != p[3] {
                return Err(Error::BadInput(format!(
                    "{lab}: asymmetric max-pool padding {p:?} is not supported"
                )));
            }
            [p[0], p[1]]
        } else {
            let any_pad = p.iter().any(|&v| v > 0);
            if any_pad && a.int("count_include_pad", 0) == 0 {
                return Err(Error::BadInput(format!(
                    "{lab}: average pooling with padding and count_include_pad = 0 is not \
                     supported (use count_include_pad=True, PyTorch's default)"
                )));
            }
            if p[0] != p[2] || p[1] != p[3] {
                layers.push(GraphLayer::Pad { pads: p });
                (hh, ww) = (h + p[0] + p[2], w + p[1] + p[3]);
                [0, 0]
            } else {
                [p[0], p[1]]
            }
        };
        let out = |n, i: usize| {
            (pad[i] < kernel[i])
                .then(|| window_out(n, kernel[i], stride[i], pad[i]))
                .flatten()
        };
        let (Some(ho), Some(wo)) = (out(hh, 0), out(ww, 1)) else {
            return Err(Error::BadInput(format!(
                "{lab}: kernel {kernel:?} with padding {pad:?} does not fit the {h}×{w} input"
            )));
        };
        layers.push(if is_max {
            GraphLayer::MaxPool {
                kernel,
                stride,
                pad,
            }
        } else {
            GraphLayer::AvgPool {
                kernel,
                stride,
                pad,
            }
        });
        Ok((layers, Shape::Map([c, ho, wo])))
    }

    fn reshape(&mut self, i: usize, shape: Shape) -> Result<(Vec<GraphLayer>, Shape)> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        let a = Attrs::new(n, &lab, &["allowzero"])?;
        let target = self.weight(i, 1, "shape")?.ints().map(|v| v.to_vec());
        let d = shape.numel() as i64;
        let ok = a.int("allowzero", 0) == 0
            && matches!(target.as_deref(), Some([0 | -1, b]) if *b == -1 || *b == d)
            && target.as_deref() != Some(&[-1, -1]);
        if !ok {
            return Err(Error::BadInput(format!(
                "{lab}: only a reshape to (N, -1) is supported (shape [0, -1] or [-1, {d}]), \
                 got {target:?}; use torch.flatten(x, 1)"
            )));
        }
        Ok((vec![GraphLayer::Flatten], Shape::Flat(shape.numel())))
    }

    fn pad(&mut self, i: usize, shape: Shape) -> Result<(Vec<GraphLayer>, Shape)> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        let a = Attrs::new(n, &lab, &["mode", "pads", "value"])?;
        let [c, h, w] = map_shape(shape, &lab)?;
        if a.string("mode", "constant") != "constant" {
            return Err(Error::BadInput(format!(
                "{lab}: Pad mode `{}` is not supported (constant zeros only)",
                a.string("mode", "constant")
            )));
        }
        let value = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => {
                let c = self.weight(i, 2, "constant_value")?;
                c.floats()
                    .map(|v| v.iter().all(|&x| x == 0.0))
                    .unwrap_or(false)
            }
            None => a.float("value", 0.0) == 0.0,
        };
        if !value || n.input.get(3).is_some_and(|s| !s.is_empty()) {
            return Err(Error::BadInput(format!(
                "{lab}: only zero padding of all axes given in `pads` is supported (no \
                 constant_value ≠ 0, no `axes` input)"
            )));
        }
        let pads: Vec<i64> = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(_) => self
                .weight(i, 1, "pads")?
                .ints()
                .map(|v| v.to_vec())
                .unwrap_or_default(),
            None => a.get("pads").map(|p| p.ints.clone()).unwrap_or_default(),
        };
        if pads.len() != 8
            || pads.iter().any(|&v| v < 0)
            || pads[0] != 0
            || pads[1] != 0
            || pads[4] != 0
            || pads[5] != 0
        {
            return Err(Error::BadInput(format!(
                "{lab}: pads {pads:?} not supported (8 non-negative values, zero on the batch \
                 and channel axes)"
            )));
        }
        let p = [pads[2], pads[3], pads[6], pads[7]].map(|v| v as usize);
        Ok((
            vec![GraphLayer::Pad { pads: p }],
            Shape::Map([c, h + p[0] + p[2], w + p[1] + p[3]]),
        ))
    }

    fn linear(
        &mut self,
        lab: &str,
        shape: Shape,
        w: Vec<f32>,
        (out, inp): (usize, usize),
        bias: Option<Vec<f32>>,
    ) -> Result<(Vec<GraphLayer>, Shape)> {
        let Shape::Flat(d) = shape else {
            return Err(Error::BadInput(format!(
                "{lab}: needs a flat (N, D) input; flatten first (torch.flatten(x, 1))"
            )));
        };
        if d != inp {
            return Err(Error::BadInput(format!(
                "{lab}: weight for {inp} inputs, the previous layer gives {d}"
            )));
        }
        let name = self.fresh_name("fc");
        self.put(format!("{name}.weight"), &[out, inp], w)?;
        let has_bias = bias.is_some();
        if let Some(b) = bias {
            self.put(format!("{name}.bias"), &[out], b)?;
        }
        Ok((
            vec![GraphLayer::Linear {
                name,
                in_features: inp,
                out_features: out,
                bias: has_bias,
            }],
            Shape::Flat(out),
        ))
    }

    fn gemm(&mut self, i: usize, shape: Shape) -> Result<(Vec<GraphLayer>, Shape)> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        let a = Attrs::new(n, &lab, &["alpha", "beta", "transA", "transB"])?;
        if a.int("transA", 0) != 0 {
            return Err(Error::BadInput(format!(
                "{lab}: transA = 1 is not supported"
            )));
        }
        let (bd, bv) = self.floats_of(i, 1, "B")?;
        if bd.len() != 2 {
            return Err(Error::BadInput(format!(
                "{lab}: B of shape {bd:?} is not 2-d"
            )));
        }
        let alpha = a.float("alpha", 1.0);
        let (out, inp, mut w) = if a.int("transB", 0) != 0 {
            (bd[0], bd[1], bv)
        } else {
            (bd[1], bd[0], transpose(&bv, bd[0], bd[1]))
        };
        if alpha != 1.0 {
            w.iter_mut().for_each(|v| *v *= alpha);
        }
        let bias = match self.nodes[i].input.get(2).filter(|s| !s.is_empty()) {
            Some(_) => {
                let (cd, mut cv) = self.floats_of(i, 2, "C")?;
                if cv.len() != out {
                    return Err(Error::BadInput(format!(
                        "{lab}: C of shape {cd:?}, expected [{out}] (per-output bias)"
                    )));
                }
                let beta = a.float("beta", 1.0);
                if beta != 1.0 {
                    cv.iter_mut().for_each(|v| *v *= beta);
                }
                Some(cv)
            }
            None => None,
        };
        self.linear(&lab, shape, w, (out, inp), bias)
    }

    /// MatMul by a constant (in, out) matrix, fused with a following Add of a constant bias;
    /// returns the Add's output when fused.
    fn matmul(
        &mut self,
        i: usize,
        shape: Shape,
    ) -> Result<(Vec<GraphLayer>, Shape, Option<String>)> {
        let n = &self.nodes[i];
        let lab = label(self.nodes, i);
        Attrs::new(n, &lab, &[])?;
        let (bd, bv) = self.floats_of(i, 1, "weight")?;
        if bd.len() != 2 {
            return Err(Error::BadInput(format!(
                "{lab}: weight of shape {bd:?} is not 2-d"
            )));
        }
        let (inp, out) = (bd[0], bd[1]);
        let w = transpose(&bv, inp, out);
        let y = n.output[0].clone();
        let mut bias = None;
        let mut fused_out = None;
        if let [(j, slot)] = *self.uses(&y) {
            let m = &self.nodes[j];
            let other = 1 - slot.min(1);
            if m.op_type.as_deref() == Some("Add")
                && m.input.len() == 2
                && y != self.output
                && self.is_const(&m.input[other])
            {
                let c = self.constant(&m.input[other]).cloned();
                if let Some(v) = c
                    .as_ref()
                    .and_then(|c| c.floats())
                    .filter(|v| v.len() == out)
                {
                    bias = Some(v.to_vec());
                    self.done[j] = true;
                    fused_out = Some(m.output[0].clone());
                }
            }
        }
        let (layers, shape) = self.linear(&lab, shape, w, (out, inp), bias)?;
        Ok((layers, shape, fused_out))
    }
}

/// The transpose of a row-major `r × c` matrix.
fn transpose(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    t
}
