//! TODO

/// An input record that was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Where: file and line, or row number.
    pub at: String,
    /// Why.
    pub reason: String,
}
