//! Parameter validation shared by the physics models.
//!
//! Each model's `repair` method checks its parameters field by field with [`repair!`],
//! replacing every unusable value by a default and collecting the names of the fields it
//! replaced; `validate` reports those names, and the constructors log them.

/// Resets `params.field` to `default`, recording the field's name in `bad`, unless the value is
/// finite and passes `ok`.
///
/// `bad` is a `Vec<&'static str>`, `params` a mutable binding to the parameters, `field` an
/// `f64` field of them, `default` the replacement value and `ok` a predicate `Fn(f64) -> bool`
/// (a closure or the name of one). `ok` is only called on finite values.
///
/// ```text
/// repair!(bad, p.interval_s, d.interval_s, |v: f64| v >= 0.001);
/// ```
macro_rules! repair {
    ($bad:ident, $params:ident . $field:ident, $default:expr, $ok:expr) => {
        if !($params.$field.is_finite() && ($ok)($params.$field)) {
            $bad.push(stringify!($field));
            $params.$field = $default;
        }
    };
}

pub(crate) use repair;
