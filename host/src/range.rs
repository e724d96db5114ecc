//! Bounded numeric settings: one type carries a setting's range and unit,
//! so that the configuration file, the command line and the runtime check
//! refuse the same values with the same bounds.
//!
//! A setting's type is written once, beside what it bounds (for example
//! [`AttemptDelay`](crate::settings::AttemptDelay) next to the race's
//! rules), and the settings use that type for both the TOML key and the
//! flag.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// What a bounded number counts, for messages and conversions.
pub trait Unit {
    /// How the unit reads in a message (`milliseconds`); empty for plain
    /// counts.
    const NAME: &'static str;
}

/// Declares the unit markers, each with its name in messages.
macro_rules! units {
    ($( $(#[$doc:meta])* $unit:ident = $name:literal; )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub enum $unit {}

            impl Unit for $unit {
                const NAME: &'static str = $name;
            }
        )*
    };
}

units! {
    /// Milliseconds.
    Millis = "milliseconds";
    /// Milliseconds, where 0 turns the limit off.
    MillisOrOff = "milliseconds, 0: no limit";
    /// Seconds.
    Seconds = "seconds";
    /// Seconds, where 0 turns the limit off.
    SecondsOrOff = "seconds, 0: no limit";
    /// Mebibytes.
    Mib = "MiB";
    /// Kibibytes.
    Kib = "KiB";
    /// A plain count.
    Count = "";
    /// A count, where 0 turns the limit off.
    CountOrOff = "0: no limit";
}

/// A number of `U` between `MIN` and `MAX`, both included. It can only be
/// made within its bounds.
pub struct Ranged<U, const MIN: u64, const MAX: u64> {
    value: u64,
    unit: PhantomData<U>,
}

impl<U: Unit, const MIN: u64, const MAX: u64> Ranged<U, MIN, MAX> {
    /// The smallest value accepted.
    pub const MIN: u64 = MIN;
    /// The largest value accepted.
    pub const MAX: u64 = MAX;

    /// `value`, if it is within the bounds.
    pub fn new(value: u64) -> Result<Self, OutOfRange> {
        if Self::contains(value) {
            Ok(Ranged {
                value,
                unit: PhantomData,
            })
        } else {
            Err(OutOfRange::of::<MIN, MAX>(Some(value.into())))
        }
    }

    /// The number, in its unit.
    pub fn get(self) -> u64 {
        self.value
    }

    /// What the setting must be, for a message about a value of the wrong
    /// type: `an integer (milliseconds)`.
    pub(crate) fn expected_type() -> String {
        match U::NAME {
            "" => "an integer".to_owned(),
            unit => format!("an integer ({unit})"),
        }
    }

    /// The bounds in words, for a message about a value out of them:
    /// `between 10 and 2000 (milliseconds)`.
    pub(crate) fn expected_range() -> String {
        match U::NAME {
            "" => format!("between {MIN} and {MAX}"),
            unit => format!("between {MIN} and {MAX} ({unit})"),
        }
    }

    /// Whether `value` (in the unit) is within the bounds.
    pub(crate) fn contains(value: u64) -> bool {
        (MIN..=MAX).contains(&value)
    }
}

/// Conversions of a bounded time into what the runtime uses.
impl<const MIN: u64, const MAX: u64> Ranged<Millis, MIN, MAX> {
    /// The duration.
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.value)
    }
}

impl<const MIN: u64, const MAX: u64> Ranged<Seconds, MIN, MAX> {
    /// The duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.value)
    }
}

impl<const MIN: u64, const MAX: u64> Ranged<MillisOrOff, MIN, MAX> {
    /// The duration, `None` for 0 (no limit).
    pub fn duration(self) -> Option<Duration> {
        (self.value != 0).then(|| Duration::from_millis(self.value))
    }
}

impl<const MIN: u64, const MAX: u64> Ranged<SecondsOrOff, MIN, MAX> {
    /// The duration, `None` for 0 (no limit).
    pub fn duration(self) -> Option<Duration> {
        (self.value != 0).then(|| Duration::from_secs(self.value))
    }
}

impl<const MIN: u64, const MAX: u64> Ranged<Mib, MIN, MAX> {
    /// The size in bytes.
    pub fn bytes(self) -> usize {
        to_usize(self.value) << 20
    }
}

impl<const MIN: u64, const MAX: u64> Ranged<Kib, MIN, MAX> {
    /// The size in bytes.
    pub fn bytes(self) -> usize {
        to_usize(self.value) << 10
    }
}

impl<const MIN: u64, const MAX: u64> Ranged<Count, MIN, MAX> {
    /// The count.
    pub fn count(self) -> usize {
        to_usize(self.value)
    }
}

impl<const MIN: u64, const MAX: u64> Ranged<CountOrOff, MIN, MAX> {
    /// The count, `None` for 0 (no limit).
    pub fn count(self) -> Option<u32> {
        (self.value != 0).then(|| u32::try_from(self.value).unwrap_or(u32::MAX))
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

// Derives would bound `U`, which is only a marker.
impl<U, const MIN: u64, const MAX: u64> Clone for Ranged<U, MIN, MAX> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<U, const MIN: u64, const MAX: u64> Copy for Ranged<U, MIN, MAX> {}
impl<U, const MIN: u64, const MAX: u64> PartialEq for Ranged<U, MIN, MAX> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<U, const MIN: u64, const MAX: u64> Eq for Ranged<U, MIN, MAX> {}

impl<U, const MIN: u64, const MAX: u64> fmt::Debug for Ranged<U, MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.value, f)
    }
}

impl<U, const MIN: u64, const MAX: u64> fmt::Display for Ranged<U, MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.value, f)
    }
}

/// The command line's form: a decimal number within the bounds.
impl<U: Unit, const MIN: u64, const MAX: u64> std::str::FromStr for Ranged<U, MIN, MAX> {
    type Err = OutOfRange;

    fn from_str(text: &str) -> Result<Self, OutOfRange> {
        let n: i128 = text.parse().map_err(|_| OutOfRange::of::<MIN, MAX>(None))?;
        u64::try_from(n)
            .map_err(|_| OutOfRange::of::<MIN, MAX>(Some(n)))
            .and_then(Self::new)
    }
}

/// A value outside a setting's bounds (or, on the command line, not a
/// number at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// `None` when the text was not a number.
    value: Option<i128>,
    min: u64,
    max: u64,
}

impl OutOfRange {
    fn of<const MIN: u64, const MAX: u64>(value: Option<i128>) -> Self {
        OutOfRange {
            value,
            min: MIN,
            max: MAX,
        }
    }
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            None => write!(f, "not a number in {}..={}", self.min, self.max),
            Some(n) => write!(f, "{n} is not in {}..={}", self.min, self.max),
        }
    }
}

impl std::error::Error for OutOfRange {}

#[cfg(test)]
mod tests {
    use super::*;

    type Delay = Ranged<Millis, 10, 2000>;

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(Delay::new(10).unwrap().duration(), Duration::from_millis(10));
        assert_eq!(Delay::new(2000).unwrap().get(), 2000);
        assert_eq!(Delay::new(9).unwrap_err().to_string(), "9 is not in 10..=2000");
        assert_eq!(
            "2001".parse::<Delay>().unwrap_err().to_string(),
            "2001 is not in 10..=2000"
        );
        assert_eq!("-1".parse::<Delay>().unwrap_err().to_string(), "-1 is not in 10..=2000");
        assert!("fast".parse::<Delay>().is_err());
        assert_eq!(Delay::expected_range(), "between 10 and 2000 (milliseconds)");
    }

    #[test]
    fn zero_is_off_where_the_unit_says_so() {
        assert_eq!(Ranged::<MillisOrOff, 0, 10>::new(0).unwrap().duration(), None);
        assert_eq!(Ranged::<CountOrOff, 0, 10>::new(3).unwrap().count(), Some(3));
        assert_eq!(Ranged::<Mib, 1, 4096>::new(2).unwrap().bytes(), 2 << 20);
        assert_eq!(Ranged::<Count, 1, 4>::expected_type(), "an integer");
    }
}
