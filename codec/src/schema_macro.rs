//! The declarative schema macros: [`message!`](crate::message) and
//! [`enumeration!`](crate::enumeration).
//!
//! `message!` turns a schema written as data into a module holding a zero-copy decoder, an
//! in-place encoder and the constants of the layout:
//!
//! ```
//! use tern_codec::{SemanticVersion, Schema};
//!
//! pub const SHOP: Schema = Schema::new("shop", 42, SemanticVersion::new(1, 1, 0));
//!
//! tern_codec::enumeration! {
//!     /// Which side of the book.
//!     pub enum Side: u8 { Buy = 0, Sell = 1 }
//! }
//!
//! tern_codec::message! {
//!     /// An order with its fills.
//!     pub mod order (schema = SHOP, template = 1, policy = Terminate) {
//!         block {
//!             /// The order's id.
//!             order_id @ 0 since 0: u64,
//!             side @ 8 since 0: Side,
//!             /// Added in 1.1: readers of 1.0 messages see `None`.
//!             quantity @ 9 since 1: u32,
//!         }
//!         groups {
//!             fills (max = 16) since 0 {
//!                 price @ 0 since 0: i64,
//!                 size @ 8 since 0: u32,
//!             }
//!         }
//!         var_data {
//!             symbol (max = 16) since 0: str,
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut buf = [0u8; 128];
//! let mut encoder = order::Encoder::wrap(&mut buf)?;
//! encoder.order_id(7).side(Side::Sell).quantity(100);
//! let length = encoder
//!     .fills(2, |index, fill| {
//!         fill.price(10_000 + index as i64).size(50);
//!     })?
//!     .symbol("TERN")?
//!     .finish();
//!
//! let decoder = order::Decoder::decode(&buf[..length])?;
//! assert_eq!(decoder.order_id(), 7);
//! assert_eq!(decoder.side(), Side::Sell);
//! assert_eq!(decoder.quantity(), Some(100));
//! assert_eq!(decoder.fills().map(|fill| fill.size()).sum::<u32>(), 100);
//! assert_eq!(decoder.symbol(), "TERN");
//! # Ok(())
//! # }
//! ```
//!
//! What the generated module holds:
//!
//! - `SCHEMA`, `TEMPLATE_ID` (the number with its policy bits), `POLICY`, `BLOCK_LENGTH`,
//!   `min_block_length(acting_minor)`, and `offset::<field>` for every fixed field.
//! - `Decoder<'a>`: [`Decoder::decode`] validates the header, the version, every block length,
//!   group count and var-data length once; after that every accessor is a constant-offset read
//!   that cannot fail. A field, group or var-data element added in a later minor version than the
//!   writer's reads as `None`.
//! - `Encoder<'a, S>`: `wrap` writes the header and zeroes the block; fixed fields are set on the
//!   first stage only, then each group and var-data element is written in declaration order, each
//!   call moving the encoder to the next stage type, so the type system keeps the order. Only the
//!   last stage has `finish`. Group entries and every reserved byte are zeroed before they are
//!   filled, so equal messages are equal bytes.
//! - one module per group with the entry's `Decoder`, `Encoder`, `MAX_COUNT` and layout constants.
//!
//! Compile-time assertions check that fields tile the block from offset 0 without gaps or overlap,
//! that since-versions never decrease and never exceed the schema's minor, that limits fit their
//! wire widths, and that no group is newer than a var-data field (see [`crate::body`]).
//!
//! The assertions fail the build. Fields must tile the block, so a gap does not compile:
//!
//! ```compile_fail
//! # use tern_codec::{Schema, SemanticVersion};
//! # pub const S: Schema = Schema::new("s", 1, SemanticVersion::new(1, 0, 0));
//! tern_codec::message! {
//!     pub mod gap (schema = S, template = 1, policy = Reject) {
//!         block { a @ 0 since 0: u32, b @ 8 since 0: u32 }
//!         groups {}
//!         var_data {}
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! A field newer than its schema, or appended with an older since-version, does not compile:
//!
//! ```compile_fail
//! # use tern_codec::{Schema, SemanticVersion};
//! # pub const S: Schema = Schema::new("s", 1, SemanticVersion::new(1, 1, 0));
//! tern_codec::message! {
//!     pub mod too_new (schema = S, template = 1, policy = Reject) {
//!         block { a @ 0 since 0: u32, b @ 4 since 2: u32 }
//!         groups {}
//!         var_data {}
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! ```compile_fail
//! # use tern_codec::{Schema, SemanticVersion};
//! # pub const S: Schema = Schema::new("s", 1, SemanticVersion::new(1, 1, 0));
//! tern_codec::message! {
//!     pub mod out_of_order (schema = S, template = 1, policy = Reject) {
//!         block { a @ 0 since 1: u32, b @ 4 since 0: u32 }
//!         groups {}
//!         var_data {}
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! A group added in a minor version after var data existed would be misread by old readers:
//!
//! ```compile_fail
//! # use tern_codec::{Schema, SemanticVersion};
//! # pub const S: Schema = Schema::new("s", 1, SemanticVersion::new(1, 1, 0));
//! tern_codec::message! {
//!     pub mod late_group (schema = S, template = 1, policy = Reject) {
//!         block { a @ 0 since 0: u32 }
//!         groups { items (max = 4) since 1 { x @ 0 since 1: u8 } }
//!         var_data { name (max = 8) since 0: str }
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! And the encoder's stages keep the order: a fixed field cannot be set after a group, nor var
//! data written before the group that precedes it.
//!
//! ```compile_fail
//! # use tern_codec::{Schema, SemanticVersion};
//! # pub const S: Schema = Schema::new("s", 1, SemanticVersion::new(1, 0, 0));
//! # tern_codec::message! {
//! #     pub mod m (schema = S, template = 1, policy = Reject) {
//! #         block { a @ 0 since 0: u32 }
//! #         groups { items (max = 4) since 0 { x @ 0 since 0: u8 } }
//! #         var_data { name (max = 8) since 0: str }
//! #     }
//! # }
//! # fn main() {
//! let mut buf = [0u8; 64];
//! let encoder = m::Encoder::wrap(&mut buf).unwrap();
//! let _ = encoder.name("too early");
//! # }
//! ```
//!
//! ```compile_fail
//! # use tern_codec::{Schema, SemanticVersion};
//! # pub const S: Schema = Schema::new("s", 1, SemanticVersion::new(1, 0, 0));
//! # tern_codec::message! {
//! #     pub mod m (schema = S, template = 1, policy = Reject) {
//! #         block { a @ 0 since 0: u32 }
//! #         groups { items (max = 4) since 0 { x @ 0 since 0: u8 } }
//! #         var_data { name (max = 8) since 0: str }
//! #     }
//! # }
//! # fn main() {
//! let mut buf = [0u8; 64];
//! let mut encoder = m::Encoder::wrap(&mut buf).unwrap().items(0, |_, _| {}).unwrap();
//! encoder.a(1);
//! # }
//! ```
//!
//! Names `decode`, `from_parts`, `wrap`, `finish`, `acting_minor`, `encoded_length`, `offset` and
//! `stage` are taken by the generated code. Group entries hold fixed fields only.

/// Declares an enumeration carried as a primitive. Unknown values decode to `Unknown(n)`, never
/// to an error or a panic: the application decides what an unknown value means.
#[macro_export]
macro_rules! enumeration {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $repr:ty {
            $( $(#[$variant_meta:meta])* $variant:ident = $value:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant, )*
            /// A value this build does not know, kept so that it can be reported or passed on.
            Unknown($repr),
        }

        impl $name {
            /// Reads the enumeration from its wire value.
            #[inline]
            pub const fn from_wire(value: $repr) -> Self {
                match value {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }

            /// The wire value.
            #[inline]
            pub const fn to_wire(self) -> $repr {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Unknown(value) => value,
                }
            }
        }

        impl $crate::wire::WireField for $name {
            const SIZE: usize = <$repr as $crate::wire::WireField>::SIZE;

            #[inline(always)]
            fn read(bytes: &[u8]) -> Self {
                Self::from_wire(<$repr as $crate::wire::WireField>::read(bytes))
            }

            #[inline(always)]
            fn write(self, bytes: &mut [u8]) {
                $crate::wire::WireField::write(self.to_wire(), bytes)
            }
        }
    };
}

/// Declares a versioned message of a schema; see the [module docs](crate::schema_macro).
#[macro_export]
macro_rules! message {
    (
        $(#[$meta:meta])*
        $vis:vis mod $name:ident (
            schema = $schema:path, template = $template:literal, policy = $policy:ident
        ) {
            block {
                $( $(#[$fmeta:meta])* $field:ident @ $foff:tt since $fsince:tt : $fty:ty ),*
                $(,)?
            }
            groups {
                $(
                    $(#[$gmeta:meta])* $group:ident (max = $gmax:literal) since $gsince:tt {
                        $(
                            $(#[$gfmeta:meta])*
                            $gfield:ident @ $gfoff:tt since $gfsince:tt : $gfty:ty
                        ),* $(,)?
                    }
                )*
            }
            var_data {
                $( $(#[$vmeta:meta])* $var:ident (max = $vmax:literal) since $vsince:tt : $vkind:ident ),*
                $(,)?
            }
        }
    ) => {
        $(#[$meta])*
        #[allow(unused_imports)]
        $vis mod $name {
            use super::*;
            use core::marker::PhantomData;

            /// The schema this message belongs to.
            pub const SCHEMA: $crate::Schema = {
                // Resolve the path from the parent module, so a schema constant named `SCHEMA`
                // does not refer to this one.
                #[allow(unused_imports)]
                use super::*;
                $schema
            };
            /// What a reader that does not know this message must do.
            pub const POLICY: $crate::UnknownPolicy = $crate::UnknownPolicy::$policy;
            /// The template id: the template number with the policy in its top two bits.
            pub const TEMPLATE_ID: u16 = POLICY.template_id($template);

            $crate::__tern_block! {
                what = stringify!($name);
                decoder = { impl<'a> Decoder<'a> };
                encoder = { impl<'a> Encoder<'a, stage::Block> };
                fields = { $( $(#[$fmeta])* $field @ $foff since $fsince : $fty ),* };
            }

            #[allow(unused_assignments, unused_comparisons, clippy::absurd_extreme_comparisons)]
            const _: () = {
                let mut group_since = 0u8;
                $(
                    assert!($gsince >= group_since, "groups must be declared in since order");
                    assert!($gsince <= SCHEMA.version.minor, "a group is newer than its schema");
                    assert!($gmax <= $crate::body::GROUP_COUNT_MAX, "group counts are u16");
                    group_since = $gsince;
                )*
                let mut var_since = group_since;
                $(
                    assert!(
                        $vsince >= var_since,
                        "var data must be declared in since order, and no group may be newer \
                         than a var-data field (old readers would misread it)"
                    );
                    assert!($vsince <= SCHEMA.version.minor, "var data is newer than its schema");
                    assert!($vmax <= $crate::body::VAR_DATA_MAX, "var data is at most 1 GiB");
                    var_since = $vsince;
                )*
            };

            $(
                #[doc = concat!("Entries of the `", stringify!($group), "` group.\n\n")]
                $(#[$gmeta])*
                pub mod $group {
                    use super::*;

                    /// The most entries the group may hold.
                    pub const MAX_COUNT: usize = $gmax;
                    /// The minor version that added the group.
                    pub const SINCE: u8 = $gsince;

                    $crate::__tern_block! {
                        what = stringify!($group);
                        decoder = { impl<'a> Decoder<'a> };
                        encoder = { impl Encoder<'_> };
                        fields = { $( $(#[$gfmeta])* $gfield @ $gfoff since $gfsince : $gfty ),* };
                    }

                    /// A view of one entry.
                    #[derive(Clone, Copy)]
                    pub struct Decoder<'a> {
                        block: &'a [u8],
                        acting_minor: u8,
                    }

                    impl<'a> $crate::body::EntryView<'a> for Decoder<'a> {
                        #[inline]
                        fn from_block(block: &'a [u8], acting_minor: u8) -> Self {
                            Self { block, acting_minor }
                        }
                    }

                    impl core::fmt::Debug for Decoder<'_> {
                        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                            f.debug_struct(stringify!($group))
                                $( .field(stringify!($gfield), &self.$gfield()) )*
                                .finish()
                        }
                    }

                    /// Writes one entry in place; the entry arrives zeroed.
                    pub struct Encoder<'b> {
                        pub(super) block: &'b mut [u8],
                    }

                    impl Encoder<'_> {
                        #[inline(always)]
                        fn block_mut(&mut self) -> &mut [u8] {
                            self.block
                        }
                    }
                }
            )*

            /// Markers for what an encoder has written last; each method moves to the next.
            pub mod stage {
                /// The fixed block: fields may be set.
                pub struct Block;
                $(
                    #[doc = concat!("The `", stringify!($group), "` group has been written.")]
                    #[allow(non_camel_case_types)]
                    pub struct $group;
                )*
                $(
                    #[doc = concat!("The `", stringify!($var), "` field has been written.")]
                    #[allow(non_camel_case_types)]
                    pub struct $var;
                )*
            }

            /// A validated, zero-copy view of one message.
            #[derive(Clone, Copy)]
            pub struct Decoder<'a> {
                block: &'a [u8],
                acting_minor: u8,
                encoded_length: usize,
                $( $group: Option<$crate::body::RawGroup<'a>>, )*
                $( $var: Option<$crate::__tern_var_type!($vkind, 'a)>, )*
            }

            impl<'a> Decoder<'a> {
                /// Decodes a whole message, header included, validating all of it.
                #[inline]
                pub fn decode(buf: &'a [u8]) -> Result<Self, $crate::DecodeError> {
                    let header = $crate::MessageHeader::decode(buf)?;
                    let body = buf.get($crate::MESSAGE_HEADER_LENGTH..).unwrap_or(&[]);
                    Self::from_parts(&header, body)
                }

                /// Decodes the body that follows an already decoded header (after dispatch).
                #[inline]
                #[allow(unused_comparisons, clippy::absurd_extreme_comparisons)]
                pub fn from_parts(
                    header: &$crate::MessageHeader,
                    body: &'a [u8],
                ) -> Result<Self, $crate::DecodeError> {
                    if header.schema_id != SCHEMA.id {
                        return Err($crate::DecodeError::WrongSchema {
                            expected: SCHEMA.id,
                            actual: header.schema_id,
                        });
                    }
                    if header.template_id != TEMPLATE_ID {
                        return Err($crate::DecodeError::WrongTemplate {
                            expected: TEMPLATE_ID,
                            actual: header.template_id,
                        });
                    }
                    let acting_minor = SCHEMA.acting_minor(header.version)?;
                    let block_length = usize::from(header.block_length);
                    let minimum = min_block_length(acting_minor);
                    if block_length < minimum {
                        return Err($crate::DecodeError::BlockTooShort {
                            what: stringify!($name),
                            block_length,
                            minimum,
                            acting_minor,
                        });
                    }
                    let mut reader = $crate::body::BodyReader::new(body);
                    let block = reader.take(stringify!($name), block_length)?;
                    $(
                        let $group = if acting_minor >= $gsince {
                            Some(reader.group(
                                stringify!($group),
                                $group::MAX_COUNT,
                                $group::min_block_length(acting_minor),
                                acting_minor,
                            )?)
                        } else {
                            None
                        };
                    )*
                    $(
                        let $var = if acting_minor >= $vsince {
                            let bytes = reader.var_data(stringify!($var), $vmax)?;
                            Some($crate::__tern_var_check!($vkind, stringify!($var), bytes)?)
                        } else {
                            None
                        };
                    )*
                    Ok(Self {
                        block,
                        acting_minor,
                        encoded_length: $crate::MESSAGE_HEADER_LENGTH + reader.position(),
                        $( $group, )*
                        $( $var, )*
                    })
                }

                /// The minor version the writer used (the acting version).
                #[inline]
                pub fn acting_minor(&self) -> u8 {
                    self.acting_minor
                }

                /// Bytes this decoder understood, header included. A newer writer may have
                /// appended elements after them.
                #[inline]
                pub fn encoded_length(&self) -> usize {
                    self.encoded_length
                }

                $( $crate::__tern_group_getter! { 'a, $(#[$gmeta])* $group since $gsince } )*
                $( $crate::__tern_var_getter! { 'a, $(#[$vmeta])* $var since $vsince : $vkind } )*
            }

            impl core::fmt::Debug for Decoder<'_> {
                fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.debug_struct(stringify!($name))
                        .field("acting_minor", &self.acting_minor)
                        $( .field(stringify!($field), &self.$field()) )*
                        $( .field(stringify!($group), &self.$group()) )*
                        $( .field(stringify!($var), &self.$var()) )*
                        .finish()
                }
            }

            /// Writes one message in place, in declaration order (see [`stage`]).
            pub struct Encoder<'a, S = stage::Block> {
                buf: &'a mut [u8],
                limit: usize,
                stage: PhantomData<S>,
            }

            impl<'a> Encoder<'a, stage::Block> {
                /// Writes the header at the start of `buf` and zeroes the fixed block.
                #[inline]
                pub fn wrap(buf: &'a mut [u8]) -> Result<Self, $crate::EncodeError> {
                    let limit = $crate::MESSAGE_HEADER_LENGTH + BLOCK_LENGTH;
                    let available = buf.len();
                    let Some(block) = buf.get_mut($crate::MESSAGE_HEADER_LENGTH..limit) else {
                        return Err($crate::EncodeError::BufferTooSmall {
                            what: stringify!($name),
                            needed: limit,
                            available,
                        });
                    };
                    block.fill(0);
                    // BLOCK_LENGTH is asserted to fit a u16 at compile time.
                    #[allow(clippy::cast_possible_truncation)]
                    let header = $crate::MessageHeader {
                        block_length: BLOCK_LENGTH as u16,
                        template_id: TEMPLATE_ID,
                        schema_id: SCHEMA.id,
                        version: SCHEMA.version.wire_version(),
                    };
                    header.encode(buf)?;
                    Ok(Self { buf, limit, stage: PhantomData })
                }

                #[inline(always)]
                fn block_mut(&mut self) -> &mut [u8] {
                    self.buf.get_mut($crate::MESSAGE_HEADER_LENGTH..).unwrap_or(&mut [])
                }
            }

            impl<S> Encoder<'_, S> {
                /// Bytes written so far, header included.
                #[inline]
                pub fn encoded_length(&self) -> usize {
                    self.limit
                }
            }

            $crate::__tern_chain! {
                'a; stage::Block;
                $( group $group; )*
                $( var $var $vkind $vmax; )*
            }
        }
    };
}

/// Layout constants, assertions and accessors of one fixed block (a message's or an entry's).
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_block {
    (
        what = $what:expr;
        decoder = { $($decoder:tt)* };
        encoder = { $($encoder:tt)* };
        fields = { $( $(#[$fmeta:meta])* $field:ident @ $foff:tt since $fsince:tt : $fty:ty ),* };
    ) => {
        /// Bytes in the fixed block this build writes.
        pub const BLOCK_LENGTH: usize = 0 $( + <$fty as $crate::wire::WireField>::SIZE )*;

        /// Bytes of fixed block a writer of minor version `acting_minor` must send.
        #[allow(unused_mut, unused_variables, unused_comparisons, clippy::absurd_extreme_comparisons)]
        pub const fn min_block_length(acting_minor: u8) -> usize {
            let mut length = 0;
            $(
                if $fsince <= acting_minor {
                    length = $foff + <$fty as $crate::wire::WireField>::SIZE;
                }
            )*
            length
        }

        /// The offset of every fixed field within the block.
        #[allow(non_upper_case_globals)]
        pub mod offset {
            $(
                #[doc = concat!("Where `", stringify!($field), "` starts.")]
                pub const $field: usize = $foff;
            )*
        }

        #[allow(
            unused_assignments,
            unused_mut,
            unused_comparisons,
            clippy::absurd_extreme_comparisons
        )]
        const _: () = {
            let mut next = 0usize;
            let mut since = 0u8;
            $(
                assert!(
                    $foff == next,
                    concat!("field `", stringify!($field), "` must start where the field before it ends")
                );
                assert!(
                    $fsince >= since,
                    concat!("field `", stringify!($field), "` is older than a field before it")
                );
                assert!(
                    $fsince <= SCHEMA.version.minor,
                    concat!("field `", stringify!($field), "` is newer than its schema")
                );
                next += <$fty as $crate::wire::WireField>::SIZE;
                since = $fsince;
            )*
            assert!(next == BLOCK_LENGTH);
            assert!(BLOCK_LENGTH <= u16::MAX as usize, "block lengths are u16");
        };

        $($decoder)* {
            $( $crate::__tern_getter! { $(#[$fmeta])* $field @ $foff since $fsince : $fty } )*
        }

        $($encoder)* {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.\n\n")]
                $(#[$fmeta])*
                #[inline(always)]
                pub fn $field(&mut self, value: $fty) -> &mut Self {
                    $crate::wire::write_field(self.block_mut(), $foff, value);
                    self
                }
            )*
        }
    };
}

/// A fixed-field getter: plain for fields every version has, `Option` for later ones.
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_getter {
    ( $(#[$m:meta])* $field:ident @ $off:tt since 0 : $ty:ty ) => {
        #[doc = concat!("Reads `", stringify!($field), "`.\n\n")]
        $(#[$m])*
        #[inline(always)]
        pub fn $field(&self) -> $ty {
            $crate::wire::read_field::<$ty>(self.block, $off)
        }
    };
    ( $(#[$m:meta])* $field:ident @ $off:tt since $since:tt : $ty:ty ) => {
        #[doc = concat!("Reads `", stringify!($field), "`.\n\n")]
        $(#[$m])*
        #[doc = concat!("\n\n`None` when the writer's minor version is older than ", stringify!($since), ".")]
        #[inline(always)]
        pub fn $field(&self) -> Option<$ty> {
            if self.acting_minor >= $since {
                Some($crate::wire::read_field::<$ty>(self.block, $off))
            } else {
                None
            }
        }
    };
}

/// A group getter: the entries, or `None` when the writer predates the group.
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_group_getter {
    ( $lt:lifetime, $(#[$m:meta])* $group:ident since 0 ) => {
        #[doc = concat!("The entries of the `", stringify!($group), "` group.\n\n")]
        $(#[$m])*
        #[inline]
        pub fn $group(&self) -> $crate::body::GroupIter<$lt, $group::Decoder<$lt>> {
            self.$group.unwrap_or_default().iter()
        }
    };
    ( $lt:lifetime, $(#[$m:meta])* $group:ident since $since:tt ) => {
        #[doc = concat!("The entries of the `", stringify!($group), "` group.\n\n")]
        $(#[$m])*
        #[doc = concat!("\n\n`None` when the writer's minor version is older than ", stringify!($since), ".")]
        #[inline]
        pub fn $group(&self) -> Option<$crate::body::GroupIter<$lt, $group::Decoder<$lt>>> {
            self.$group.map(|group| group.iter())
        }
    };
}

/// A var-data getter: the bytes or text, or `None` when the writer predates the field.
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_var_getter {
    ( $lt:lifetime, $(#[$m:meta])* $var:ident since 0 : $kind:ident ) => {
        #[doc = concat!("The `", stringify!($var), "` field.\n\n")]
        $(#[$m])*
        #[inline]
        pub fn $var(&self) -> $crate::__tern_var_type!($kind, $lt) {
            self.$var.unwrap_or_default()
        }
    };
    ( $lt:lifetime, $(#[$m:meta])* $var:ident since $since:tt : $kind:ident ) => {
        #[doc = concat!("The `", stringify!($var), "` field.\n\n")]
        $(#[$m])*
        #[doc = concat!("\n\n`None` when the writer's minor version is older than ", stringify!($since), ".")]
        #[inline]
        pub fn $var(&self) -> Option<$crate::__tern_var_type!($kind, $lt)> {
            self.$var
        }
    };
}

/// The decoded type of a var-data kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_var_type {
    (str, $lt:lifetime) => { &$lt str };
    (bytes, $lt:lifetime) => { &$lt [u8] };
}

/// The encoder's argument type for a var-data kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_var_arg {
    (str) => {
        &str
    };
    (bytes) => {
        &[u8]
    };
}

/// Validates var-data bytes as their kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_var_check {
    (str, $name:expr, $bytes:expr) => {
        $crate::body::utf8($name, $bytes)
    };
    (bytes, $name:expr, $bytes:expr) => {
        Ok::<&[u8], $crate::DecodeError>($bytes)
    };
}

/// The encoder's stage chain: one method per group or var-data element, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __tern_chain {
    ( $lt:lifetime; $prev:ty; ) => {
        impl<$lt> Encoder<$lt, $prev> {
            /// Ends the message and returns its encoded length, header included.
            #[inline]
            pub fn finish(self) -> usize {
                self.limit
            }
        }
    };
    ( $lt:lifetime; $prev:ty; group $group:ident; $($rest:tt)* ) => {
        impl<$lt> Encoder<$lt, $prev> {
            #[doc = concat!(
                "Writes `count` entries of the `", stringify!($group),
                "` group; `fill` sets each zeroed entry's fields."
            )]
            #[inline]
            pub fn $group<F>(
                self,
                count: usize,
                mut fill: F,
            ) -> Result<Encoder<$lt, stage::$group>, $crate::EncodeError>
            where
                F: FnMut(usize, &mut $group::Encoder<'_>),
            {
                let block_length = $group::BLOCK_LENGTH;
                let entries = $crate::body::write_group(
                    self.buf,
                    self.limit,
                    stringify!($group),
                    count,
                    $group::MAX_COUNT,
                    block_length,
                )?;
                for index in 0..count {
                    let start = entries + index * block_length;
                    if let Some(block) = self.buf.get_mut(start..start + block_length) {
                        fill(index, &mut $group::Encoder { block });
                    }
                }
                Ok(Encoder {
                    buf: self.buf,
                    limit: entries + count * block_length,
                    stage: PhantomData,
                })
            }
        }
        $crate::__tern_chain! { $lt; stage::$group; $($rest)* }
    };
    ( $lt:lifetime; $prev:ty; var $var:ident $kind:ident $max:tt; $($rest:tt)* ) => {
        impl<$lt> Encoder<$lt, $prev> {
            #[doc = concat!("Writes the `", stringify!($var), "` field (at most ", stringify!($max), " bytes).")]
            #[inline]
            pub fn $var(
                self,
                value: $crate::__tern_var_arg!($kind),
            ) -> Result<Encoder<$lt, stage::$var>, $crate::EncodeError> {
                let bytes: &[u8] = value.as_ref();
                let limit = $crate::body::write_var_data(
                    self.buf,
                    self.limit,
                    stringify!($var),
                    bytes,
                    $max,
                )?;
                Ok(Encoder { buf: self.buf, limit, stage: PhantomData })
            }
        }
        $crate::__tern_chain! { $lt; stage::$var; $($rest)* }
    };
}
