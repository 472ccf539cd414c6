//! Gaussian noise shared by the physics models.
//!
//! Every model draws its noise from its own seeded [`ChaCha8Rng`], so a series is a pure
//! function of its parameters, start time and seed. Keeping the one normal sampler here means
//! all models consume the generator the same way: two uniform draws per normal value.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One standard-normal draw (mean 0, standard deviation 1) by Box–Muller on two uniform draws.
///
/// Consumes exactly two `f64` draws from `rng` and uses only the cosine branch, so the draws
/// a model makes, and hence its readings for a given seed, do not depend on call history
/// beyond the generator's own state.
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.gen::<f64>(); // in (0, 1], so the logarithm is finite
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
