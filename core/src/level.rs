//! The four warning colours of China's emergency law, ordered Blue < Yellow < Orange < Red.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A warning level. Grade IV (blue, 一般) is the lowest, grade I (red, 特别严重) the highest.
/// "Cleared" is not a level: it is leaving the ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Grade IV, general (一般).
    Blue,
    /// Grade III, serious (较重).
    Yellow,
    /// Grade II, severe (严重).
    Orange,
    /// Grade I, extremely severe (特别严重).
    Red,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 4] = [Level::Blue, Level::Yellow, Level::Orange, Level::Red];

    /// Position on the ladder, 0 for blue to 3 for red.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase English colour name used on the wire and in topics.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Blue => "blue",
            Level::Yellow => "yellow",
            Level::Orange => "orange",
            Level::Red => "red",
        }
    }

    /// The Chinese colour name as used in warning bulletins (蓝色 …).
    pub fn zh(self) -> &'static str {
        match self {
            Level::Blue => "蓝色",
            Level::Yellow => "黄色",
            Level::Orange => "橙色",
            Level::Red => "红色",
        }
    }

    /// The roman grade (IV for blue … I for red).
    pub fn grade(self) -> &'static str {
        match self {
            Level::Blue => "IV",
            Level::Yellow => "III",
            Level::Orange => "II",
            Level::Red => "I",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that names no level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?} (expected blue, yellow, orange or red)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blue" => Ok(Level::Blue),
            "yellow" => Ok(Level::Yellow),
            "orange" => Ok(Level::Orange),
            "red" => Ok(Level::Red),
            other => Err(UnknownLevel(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_is_ordered_blue_to_red() {
        assert!(Level::Blue < Level::Yellow);
        assert!(Level::Yellow < Level::Orange);
        assert!(Level::Orange < Level::Red);
        assert_eq!(Level::ALL.iter().max(), Some(&Level::Red));
    }

    #[test]
    fn names_round_trip() {
        for l in Level::ALL {
            assert_eq!(l.as_str().parse::<Level>(), Ok(l));
        }
        assert!("green".parse::<Level>().is_err());
    }
}
