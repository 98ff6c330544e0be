//! One sample's balls B(x, r), each bounded once: the pre-activation trace of a radius feeds every
//! local Lipschitz method, the float32 error bound E(r) and bound propagation's energy bounds; E(r)
//! and the energy bounds are kept per radius, so the second radius search (bound propagation)
//! reuses what the first (Lipschitz) computed on the same radii. Results are those of computing
//! each bound on its own (same functions, same inputs); only repeated work goes.

use super::local::{PreBounds, pre_bounds};
use super::radius::energy_bounds_on;
use crate::bounds::f32_detector::F32Detector;
use crate::bounds::{Ball, Interval, Net, Trace};
use crate::error::Result;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A ball's node-input boxes and logit box (as [`pre_bounds`] returns them).
pub type BallTrace = Rc<(Vec<Trace>, Interval)>;

/// The bounds of the balls around one centre, memoised by radius.
pub struct BallMemo<'a> {
    net: &'a Net,
    det: &'a F32Detector,
    /// The detector's network equals `net` (the energy of a plain model): E(r) reads the same
    /// trace; otherwise (absent-class views) the detector's own trace is computed.
    shares_net: bool,
    base: &'a Ball,
    pre: PreBounds,
    temperature: f64,
    /// The latest radius's trace (one kept: a ResNet trace is tens of MB).
    last: RefCell<Option<(u64, BallTrace)>>,
    errors: RefCell<HashMap<u64, f64>>,
    energy: RefCell<HashMap<u64, (f64, f64)>>,
}

impl<'a> BallMemo<'a> {
    /// The memo of the balls centred at `base.center` (radius `base.eps` is one of them).
    pub fn new(
        net: &'a Net,
        det: &'a F32Detector,
        shares_net: bool,
        base: &'a Ball,
        pre: PreBounds,
        temperature: f64,
    ) -> BallMemo<'a> {
        BallMemo {
            net,
            det,
            shares_net,
            base,
            pre,
            temperature,
            last: RefCell::new(None),
            errors: RefCell::new(HashMap::new()),
            energy: RefCell::new(HashMap::new()),
        }
    }

    /// B(x, r).
    pub fn ball(&self, r: f64) -> Ball {
        self.base.with_eps(r)
    }

    /// The trace of `net` over B(x, r).
    pub fn trace(&self, r: f64) -> Result<BallTrace> {
        let key = r.to_bits();
        if let Some((k, t)) = self.last.borrow().as_ref()
            && *k == key
        {
            return Ok(t.clone());
        }
        let t = Rc::new(pre_bounds(self.net, &self.ball(r), self.pre)?);
        *self.last.borrow_mut() = Some((key, t.clone()));
        Ok(t)
    }

    /// E(r): the float32 error bound of the detector over B(x, r), every node's box intersected
    /// with the detector's own trace of the ball (`f32_margin::ball_error`).
    pub fn error(&self, r: f64) -> Result<f64> {
        let key = r.to_bits();
        if let Some(e) = self.errors.borrow().get(&key) {
            return Ok(*e);
        }
        let ball = self.ball(r);
        let e = if self.shares_net {
            let t = self.trace(r)?;
            self.det.error_within(&ball.to_box(), Some(&t.0))?
        } else {
            super::f32_margin::ball_error(self.det, &ball, self.pre)?
        };
        self.errors.borrow_mut().insert(key, e);
        Ok(e)
    }

    /// [`Self::energy_bounds`] of B(x, r) when its trace is the one at hand (computes no trace):
    /// the Lipschitz radius search calls it on each radius it bounded, so that the bound-propagation
    /// search, which often visits the same radii, reads them instead of tracing the ball again.
    pub fn keep_energy_bounds(&self, r: f64) -> Result<()> {
        let at_hand = matches!(self.last.borrow().as_ref(), Some((k, _)) if *k == r.to_bits());
        if at_hand {
            self.energy_bounds(r)?;
        }
        Ok(())
    }

    /// Whether the energy bounds of radius `r` are stored (computed or kept).
    pub fn has_energy_bounds(&self, r: f64) -> bool {
        self.energy.borrow().contains_key(&r.to_bits())
    }

    /// [S_lo, S_hi] of the exact energy over B(x, r) (`radius::energy_bounds_with`).
    pub fn energy_bounds(&self, r: f64) -> Result<(f64, f64)> {
        let key = r.to_bits();
        if let Some(b) = self.energy.borrow().get(&key) {
            return Ok(*b);
        }
        let t = self.trace(r)?;
        let b = energy_bounds_on(
            self.net,
            &self.ball(r),
            self.pre,
            &t.0,
            &t.1,
            self.temperature,
        )?;
        self.energy.borrow_mut().insert(key, b);
        Ok(b)
    }
}
