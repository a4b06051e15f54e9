//! Fixed-size little-endian fields, and the panic-free reads and writes every codec builds on.
//!
//! A [`WireField`] reads itself from the first [`WireField::SIZE`] bytes of a slice and writes
//! itself into them. Callers validate lengths once, when they wrap a buffer; the accessors below
//! still never index out of bounds: a read past the end yields the zero value and a write past the
//! end writes nothing (both are `debug_assert`ed, because they mean a validation bug).
//! `usize` is deliberately not a [`WireField`]: no format may depend on pointer width.

/// A fixed-size value with a little-endian wire form.
pub trait WireField: Copy + core::fmt::Debug {
    /// Bytes on the wire.
    const SIZE: usize;
    /// Reads the value from the first `SIZE` bytes; a shorter slice reads as zero.
    fn read(bytes: &[u8]) -> Self;
    /// Writes the value into the first `SIZE` bytes; a shorter slice is left untouched.
    fn write(self, bytes: &mut [u8]);
}

macro_rules! primitive_wire_field {
    ($($ty:ty),*) => {$(
        impl WireField for $ty {
            const SIZE: usize = core::mem::size_of::<$ty>();

            #[inline(always)]
            fn read(bytes: &[u8]) -> Self {
                match bytes.first_chunk::<{ core::mem::size_of::<$ty>() }>() {
                    Some(chunk) => <$ty>::from_le_bytes(*chunk),
                    None => {
                        debug_assert!(false, "read past the end of a validated buffer");
                        0 as $ty
                    }
                }
            }

            #[inline(always)]
            fn write(self, bytes: &mut [u8]) {
                match bytes.first_chunk_mut::<{ core::mem::size_of::<$ty>() }>() {
                    Some(chunk) => *chunk = self.to_le_bytes(),
                    None => debug_assert!(false, "write past the end of a checked buffer"),
                }
            }
        }
    )*};
}

primitive_wire_field!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

impl<const N: usize> WireField for [u8; N] {
    const SIZE: usize = N;

    #[inline(always)]
    fn read(bytes: &[u8]) -> Self {
        match bytes.first_chunk::<N>() {
            Some(chunk) => *chunk,
            None => {
                debug_assert!(false, "read past the end of a validated buffer");
                [0; N]
            }
        }
    }

    #[inline(always)]
    fn write(self, bytes: &mut [u8]) {
        match bytes.first_chunk_mut::<N>() {
            Some(chunk) => *chunk = self,
            None => debug_assert!(false, "write past the end of a checked buffer"),
        }
    }
}

/// Reads a `T` at `offset` in `buf`. The caller has checked that it fits.
#[inline(always)]
pub fn read_field<T: WireField>(buf: &[u8], offset: usize) -> T {
    T::read(buf.get(offset..).unwrap_or(&[]))
}

/// Writes a `T` at `offset` in `buf`. The caller has checked that it fits.
#[inline(always)]
pub fn write_field<T: WireField>(buf: &mut [u8], offset: usize, value: T) {
    value.write(buf.get_mut(offset..).unwrap_or(&mut []));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_little_endian() {
        let mut buf = [0u8; 8];
        write_field(&mut buf, 0, 0x0102_0304_u32);
        write_field(&mut buf, 4, -2_i16);
        assert_eq!(buf, [4, 3, 2, 1, 0xFE, 0xFF, 0, 0]);
        assert_eq!(read_field::<u32>(&buf, 0), 0x0102_0304);
        assert_eq!(read_field::<i16>(&buf, 4), -2);
        assert_eq!(read_field::<[u8; 3]>(&buf, 1), [3, 2, 1]);
    }
}
