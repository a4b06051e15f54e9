//! Position math over log buffers: term id and term offset to a stream position and back.
//!
//! A stream is a sequence of terms of one power-of-two length. Its position is the byte count
//! since the start of the initial term:
//!
//! ```text
//! position = ((term_id - initial_term_id) << log2(term_length)) + term_offset
//! ```
//!
//! Term ids are `i32` and wrap: the subtraction is done in 32-bit two's complement, as Aeron does,
//! so a stream whose initial term id is near `i32::MAX` keeps counting up through the wrap. A
//! stream can therefore reach `term_length << 31` bytes before its positions would repeat.

use crate::error::DecodeError;
use crate::frame::{FRAME_ALIGNMENT_U32, MESSAGE_LENGTH_MAX};

/// The shortest term a log buffer may use.
pub const TERM_LENGTH_MIN: u32 = 64 * 1024;
/// The longest term a log buffer may use.
pub const TERM_LENGTH_MAX: u32 = 1024 * 1024 * 1024;

/// How to convert positions for one stream: its term length and initial term id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TermGeometry {
    term_length: u32,
    position_bits_to_shift: u32,
    initial_term_id: i32,
}

impl TermGeometry {
    /// Geometry for terms of `term_length` bytes, any power of two from the frame alignment (32)
    /// to [`TERM_LENGTH_MAX`]. Log buffers further require at least [`TERM_LENGTH_MIN`]; see
    /// [`validate_log_term_length`].
    pub const fn new(term_length: u32, initial_term_id: i32) -> Result<Self, DecodeError> {
        match check_term_length(
            term_length,
            FRAME_ALIGNMENT_U32,
            "a term length is a power of two from 32 bytes to 1 GiB",
        ) {
            Ok(_) => Ok(Self {
                term_length,
                position_bits_to_shift: term_length.trailing_zeros(),
                initial_term_id,
            }),
            Err(error) => Err(error),
        }
    }

    /// Bytes in each term.
    pub const fn term_length(&self) -> u32 {
        self.term_length
    }

    /// `log2(term_length)`.
    pub const fn position_bits_to_shift(&self) -> u32 {
        self.position_bits_to_shift
    }

    /// The term id at position 0.
    pub const fn initial_term_id(&self) -> i32 {
        self.initial_term_id
    }

    /// The position of `term_offset` in term `term_id`.
    #[inline]
    pub const fn position(&self, term_id: i32, term_offset: u32) -> i64 {
        compute_position(
            term_id,
            term_offset,
            self.position_bits_to_shift,
            self.initial_term_id,
        )
    }

    /// The term id that holds `position`.
    #[inline]
    pub const fn term_id(&self, position: i64) -> i32 {
        compute_term_id(position, self.position_bits_to_shift, self.initial_term_id)
    }

    /// The offset of `position` within its term.
    #[inline]
    pub const fn term_offset(&self, position: i64) -> u32 {
        compute_term_offset(position, self.term_length)
    }

    /// The first position that cannot be reached without term ids repeating.
    pub const fn max_position(&self) -> i64 {
        (self.term_length as i64) << 31
    }

    /// The longest message a stream of this term length carries: an eighth of a term, at most
    /// 16 MiB.
    pub const fn max_message_length(&self) -> u32 {
        let eighth = self.term_length / 8;
        if eighth < MESSAGE_LENGTH_MAX {
            eighth
        } else {
            MESSAGE_LENGTH_MAX
        }
    }
}

/// Checks a log buffer's term length: a power of two from 64 KiB to 1 GiB.
pub const fn validate_log_term_length(term_length: u32) -> Result<u32, DecodeError> {
    check_term_length(
        term_length,
        TERM_LENGTH_MIN,
        "a log buffer's term length is a power of two from 64 KiB to 1 GiB",
    )
}

const fn check_term_length(
    term_length: u32,
    minimum: u32,
    reason: &'static str,
) -> Result<u32, DecodeError> {
    if !term_length.is_power_of_two() || term_length < minimum || term_length > TERM_LENGTH_MAX {
        return Err(DecodeError::InvalidValue {
            field: "term_length",
            value: term_length as i64,
            reason,
        });
    }
    Ok(term_length)
}

/// The position of `term_offset` in `term_id`, for a stream whose terms are
/// `1 << position_bits_to_shift` bytes and which started at `initial_term_id`.
#[inline]
pub const fn compute_position(
    term_id: i32,
    term_offset: u32,
    position_bits_to_shift: u32,
    initial_term_id: i32,
) -> i64 {
    let term_count = term_id.wrapping_sub(initial_term_id) as i64;
    (term_count << position_bits_to_shift) + term_offset as i64
}

/// The term id that holds `position`.
#[inline]
#[allow(clippy::cast_possible_truncation)]
pub const fn compute_term_id(
    position: i64,
    position_bits_to_shift: u32,
    initial_term_id: i32,
) -> i32 {
    // Positions below max_position shift to at most i32::MAX terms; the truncation keeps the
    // low 32 bits, which is the wrapping term arithmetic the protocol uses.
    ((position >> position_bits_to_shift) as i32).wrapping_add(initial_term_id)
}

/// The offset of `position` within its term of `term_length` (a power of two) bytes.
#[inline]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub const fn compute_term_offset(position: i64, term_length: u32) -> u32 {
    // The mask keeps bits below log2(term_length) <= 30: the value is non-negative and fits.
    (position & (term_length as i64 - 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_from_the_initial_term() {
        let geometry = TermGeometry::new(65536, 10).unwrap();
        assert_eq!(geometry.position(10, 0), 0);
        assert_eq!(geometry.position(10, 96), 96);
        assert_eq!(geometry.position(12, 32), 2 * 65536 + 32);
        assert_eq!(geometry.term_id(2 * 65536 + 32), 12);
        assert_eq!(geometry.term_offset(2 * 65536 + 32), 32);
    }

    #[test]
    fn term_ids_wrap_through_i32_max() {
        let geometry = TermGeometry::new(65536, i32::MAX).unwrap();
        assert_eq!(geometry.position(i32::MIN, 0), 65536);
        assert_eq!(geometry.term_id(65536), i32::MIN);
    }

    #[test]
    fn geometry_limits() {
        assert!(TermGeometry::new(48, 0).is_err());
        assert!(TermGeometry::new(16, 0).is_err());
        assert!(TermGeometry::new(TERM_LENGTH_MAX * 2, 0).is_err());
        assert!(validate_log_term_length(32768).is_err());
        assert_eq!(
            validate_log_term_length(TERM_LENGTH_MIN),
            Ok(TERM_LENGTH_MIN)
        );
        let geometry = TermGeometry::new(TERM_LENGTH_MAX, 0).unwrap();
        assert_eq!(geometry.max_message_length(), MESSAGE_LENGTH_MAX);
        assert_eq!(geometry.max_position(), 1_i64 << 61);
        assert_eq!(
            TermGeometry::new(65536, 0).unwrap().max_message_length(),
            8192
        );
    }
}
