//! The breaker's state, and how it is packed into atomics: the state word (state and
//! generation) and the half-open counts tagged with their generation.

use std::sync::atomic::{AtomicU64, Ordering};

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass; outcomes are recorded.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A fixed number of probe calls pass; their outcomes decide between closed and open.
    HalfOpen,
    /// Rejects every call until [`CircuitBreaker::reset`](crate::CircuitBreaker::reset) (an operator switch).
    ForcedOpen,
    /// Lets every call through and records nothing until [`CircuitBreaker::reset`](crate::CircuitBreaker::reset).
    Disabled,
}

pub(crate) const CLOSED: u64 = 0;
pub(crate) const HALF_OPEN: u64 = 1;
pub(crate) const OPEN: u64 = 2;
pub(crate) const FORCED_OPEN: u64 = 3;
pub(crate) const DISABLED: u64 = 4;

impl State {
    #[inline]
    pub(crate) fn from_bits(bits: u64) -> Self {
        match bits {
            CLOSED => Self::Closed,
            HALF_OPEN => Self::HalfOpen,
            OPEN => Self::Open,
            FORCED_OPEN => Self::ForcedOpen,
            _ => Self::Disabled,
        }
    }

    /// Every state, in the order of [`code`](Self::code).
    pub(crate) const ALL: [Self; 5] = [
        Self::Closed,
        Self::HalfOpen,
        Self::Open,
        Self::ForcedOpen,
        Self::Disabled,
    ];

    /// The value of the `breaker_state` gauge: 0 closed, 1 half-open, 2 open, 3 forced open,
    /// 4 disabled.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
        }
    }

    /// `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }
}

/// The state word packs the state (3 bits) and a generation counter bumped on every
/// transition: an outcome recorded under an older generation is ignored.
#[inline]
pub(crate) fn pack(generation: u64, state: u64) -> u64 {
    (generation << 3) | state
}

#[inline]
pub(crate) fn unpack(word: u64) -> (u64, u64) {
    (word >> 3, word & 0b111)
}

/// A count tagged with the generation of the state it belongs to: the generation's low 32 bits
/// above the count, so that a count left from an earlier half-open state is never mistaken for
/// the current one's.
fn tagged(generation: u64, count: u32) -> u64 {
    (generation << 32) | u64::from(count)
}

/// Sets `cell` to `count` for `generation`, unless it already holds a count of it.
pub(crate) fn init_tagged(cell: &AtomicU64, generation: u64, count: u32) {
    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
        (w >> 32 != generation & 0xffff_ffff).then(|| tagged(generation, count))
    });
}

/// Applies `f` to the count of `generation` held in `cell`; `None` when the cell holds another
/// generation's count or `f` refuses. Returns the new count.
pub(crate) fn update_tagged(
    cell: &AtomicU64,
    generation: u64,
    f: impl Fn(u32) -> Option<u32>,
) -> Option<u32> {
    let mut new = None;
    cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
        if w >> 32 != generation & 0xffff_ffff {
            return None;
        }
        // The low 32 bits are the count.
        #[allow(clippy::cast_possible_truncation)]
        let n = f(w as u32)?;
        new = Some(n);
        Some(tagged(generation, n))
    })
    .ok()
    .and(new)
}
