//! Energy-margin loss (Liu et al. 2020, eq. 9): L_S = mean_in relu(S_in − m_in)² + mean_aux relu(m_out − S_aux)².

use crate::error::Result;
use candle_core::Tensor;

/// L_S from the energies of the ID batch `s_in (n,)` and of the auxiliary batch `s_aux (m,)`.
pub fn energy_margin(s_in: &Tensor, s_aux: &Tensor, m_in: f64, m_out: f64) -> Result<Tensor> {
    let a = (s_in - m_in)?.relu()?.sqr()?.mean_all()?;
    let b = (s_aux.affine(-1.0, m_out))?.relu()?.sqr()?.mean_all()?;
    Ok((a + b)?)
}
