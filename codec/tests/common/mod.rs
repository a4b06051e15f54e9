//! The sample `order` schema at four versions, for golden fixtures and the cross-version matrix.
//!
//! 1.0 is the first release; 1.1 appends a block field, an entry field and a var-data field; 1.2
//! is a test-only "future" that appends more and adds an enum value; 2.0 breaks the layout.
#![allow(dead_code, missing_docs, unreachable_pub)]

/// Decodes fixture hex: whitespace and `#` comments are ignored.
pub fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Reads `tests/fixtures/<name>.hex`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    hex(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

pub mod v1_0 {
    use tern_codec::{Schema, SemanticVersion};
    pub const SCHEMA: Schema = Schema::new("sample", 42, SemanticVersion::new(1, 0, 0));
    tern_codec::enumeration! {
        pub enum Side: u8 { Buy = 0, Sell = 1 }
    }
    tern_codec::message! {
        pub mod order (schema = SCHEMA, template = 1, policy = Terminate) {
            block {
                order_id @ 0 since 0: u64,
                price @ 8 since 0: i64,
                side @ 16 since 0: Side,
            }
            groups {
                fills (max = 4) since 0 {
                    price @ 0 since 0: i64,
                    size @ 8 since 0: u32,
                }
            }
            var_data {
                symbol (max = 8) since 0: str,
            }
        }
    }
}

pub mod v1_1 {
    use tern_codec::{Schema, SemanticVersion};
    pub const SCHEMA: Schema = Schema::new("sample", 42, SemanticVersion::new(1, 1, 0));
    tern_codec::enumeration! {
        pub enum Side: u8 { Buy = 0, Sell = 1 }
    }
    tern_codec::message! {
        pub mod order (schema = SCHEMA, template = 1, policy = Terminate) {
            block {
                order_id @ 0 since 0: u64,
                price @ 8 since 0: i64,
                side @ 16 since 0: Side,
                quantity @ 17 since 1: u32,
            }
            groups {
                fills (max = 4) since 0 {
                    price @ 0 since 0: i64,
                    size @ 8 since 0: u32,
                    venue @ 12 since 1: u16,
                }
            }
            var_data {
                symbol (max = 8) since 0: str,
                note (max = 32) since 1: bytes,
            }
        }
    }
}

pub mod v1_2 {
    use tern_codec::{Schema, SemanticVersion};
    pub const SCHEMA: Schema = Schema::new("sample", 42, SemanticVersion::new(1, 2, 0));
    tern_codec::enumeration! {
        pub enum Side: u8 { Buy = 0, Sell = 1, Short = 2 }
    }
    tern_codec::message! {
        pub mod order (schema = SCHEMA, template = 1, policy = Terminate) {
            block {
                order_id @ 0 since 0: u64,
                price @ 8 since 0: i64,
                side @ 16 since 0: Side,
                quantity @ 17 since 1: u32,
                flags @ 21 since 2: u8,
            }
            groups {
                fills (max = 4) since 0 {
                    price @ 0 since 0: i64,
                    size @ 8 since 0: u32,
                    venue @ 12 since 1: u16,
                }
            }
            var_data {
                symbol (max = 8) since 0: str,
                note (max = 32) since 1: bytes,
                trace (max = 16) since 2: bytes,
            }
        }
    }
}

pub mod v2_0 {
    use tern_codec::{Schema, SemanticVersion};
    pub const SCHEMA: Schema = Schema::new("sample", 42, SemanticVersion::new(2, 0, 0));
    tern_codec::message! {
        pub mod order (schema = SCHEMA, template = 1, policy = Terminate) {
            block {
                order_id @ 0 since 0: u64,
                quantity @ 8 since 0: u64,
            }
            groups {}
            var_data {}
        }
    }
}

/// The 1.0 fixture's message.
pub fn encode_v1_0(buf: &mut [u8]) -> usize {
    let mut encoder = v1_0::order::Encoder::wrap(buf).unwrap();
    encoder.order_id(1).price(100).side(v1_0::Side::Sell);
    encoder
        .fills(1, |_, fill| {
            fill.price(99).size(10);
        })
        .unwrap()
        .symbol("AB")
        .unwrap()
        .finish()
}

/// The 1.1 fixture's message.
pub fn encode_v1_1(buf: &mut [u8]) -> usize {
    let mut encoder = v1_1::order::Encoder::wrap(buf).unwrap();
    encoder
        .order_id(1)
        .price(100)
        .side(v1_1::Side::Sell)
        .quantity(5);
    encoder
        .fills(1, |_, fill| {
            fill.price(99).size(10).venue(3);
        })
        .unwrap()
        .symbol("AB")
        .unwrap()
        .note(&[0xFF])
        .unwrap()
        .finish()
}

/// The 1.2 fixture's message.
pub fn encode_v1_2(buf: &mut [u8]) -> usize {
    let mut encoder = v1_2::order::Encoder::wrap(buf).unwrap();
    encoder
        .order_id(1)
        .price(100)
        .side(v1_2::Side::Short)
        .quantity(5)
        .flags(7);
    encoder
        .fills(1, |_, fill| {
            fill.price(99).size(10).venue(3);
        })
        .unwrap()
        .symbol("AB")
        .unwrap()
        .note(&[0xFF])
        .unwrap()
        .trace(b"t")
        .unwrap()
        .finish()
}
