//! Parameter validation shared by the physics models.
//!
//! Each model's parameters implement [`Repair`]: `repair` checks them field by field with
//! [`repair!`], replacing every unusable value by a default and collecting the names of the
//! fields it replaced; `validate` reports those names, and [`Series::new`] logs them.
//!
//! [`Series::new`]: crate::series::Series::new

/// Resets `params.field` to `default`, recording the field's name in `bad`, unless the value is
/// finite and passes `ok`.
///
/// `bad` is a `&mut Vec<&'static str>`, `params` a mutable binding to the parameters, `field`
/// an `f64` field of them, `default` the replacement value and `ok` a predicate
/// `Fn(f64) -> bool` (a closure, or one of [`any`], [`positive`] and [`non_negative`]). `ok` is
/// only called on finite values.
///
/// The second form checks several fields in the order listed, each against its own predicate
/// and with its value in `defaults` as the replacement.
///
/// ```text
/// repair!(bad, p.interval_s, d.interval_s, |v: f64| v >= 0.001);
/// repair!(bad, p, d, {
///     rise_shape: positive,
///     noise_sigma_m: non_negative,
/// });
/// ```
macro_rules! repair {
    ($bad:ident, $params:ident . $field:ident, $default:expr, $ok:expr) => {
        if !($params.$field.is_finite() && ($ok)($params.$field)) {
            $bad.push(stringify!($field));
            $params.$field = $default;
        }
    };
    ($bad:ident, $params:ident, $defaults:ident, { $($field:ident: $ok:expr),+ $(,)? }) => {
        $($crate::params::repair!($bad, $params.$field, $defaults.$field, $ok);)+
    };
}

pub(crate) use repair;

/// A model's parameters, checked and repaired field by field with [`repair!`].
pub trait Repair: Clone + Default {
    /// What the parameters describe, as it reads in messages ("river flood").
    const WHAT: &'static str;

    /// Checks every field of `p`, in a fixed order, resetting each unusable one to its value in
    /// the defaults `d` (or to a value derived from fields already checked, where the valid
    /// range depends on them) and pushing its name onto `bad`.
    fn repair_fields(p: &mut Self, d: &Self, bad: &mut Vec<&'static str>);

    /// Replaces each unusable field by its default and returns the names of those fields.
    fn repair(&mut self) -> Vec<&'static str> {
        let mut bad = Vec::new();
        Self::repair_fields(self, &Self::default(), &mut bad);
        bad
    }

    /// `Ok` if every field is usable; otherwise an error naming each bad field.
    fn check(&self) -> Result<(), String> {
        let bad = self.clone().repair();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("invalid {} parameter(s): {}", Self::WHAT, bad.join(", ")))
        }
    }
}

/// Predicate for [`repair!`]: any finite value will do.
pub(crate) fn any(_: f64) -> bool {
    true
}

/// Predicate for [`repair!`]: the value must be greater than zero.
pub(crate) fn positive(v: f64) -> bool {
    v > 0.0
}

/// Predicate for [`repair!`]: the value must not be below zero.
pub(crate) fn non_negative(v: f64) -> bool {
    v >= 0.0
}
