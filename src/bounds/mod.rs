//! Bound propagation (auto_LiRPA style: one rule per layer kind, one file each): the network as
//! host f64 operations, interval bounds (IBP), backward linear relaxations (CROWN), softmax and
//! energy bounds from logit bounds, and the input sets (ℓ2 / ℓ∞ balls, optionally ∩ [0,1]).

pub mod affine_ball;
pub mod avg_pool;
pub mod backsub;
pub mod conv;
pub mod dense;
pub mod diag;
pub mod interval;
pub mod linear_map;
pub mod net;
mod net_graph;
pub mod pad;
pub mod pool_geometry;
pub mod round;

pub use interval::Interval;
pub use linear_map::LinearMap;
pub use net::{Affine, LinearOp, Net, Node};
pub mod ball;
pub mod ball_cuts;
pub mod ibp;
pub mod max_pool;
pub mod relu;

pub use ball::{Ball, Norm};
pub use ibp::{Trace, ibp};
pub mod alpha_crown;
pub mod crown;
pub mod energy;
pub mod f32_detector;
pub mod f32_energy;
pub mod f32_forward;
pub mod softmax;
