//! The cross-version matrix: every reader version of the sample schema against every writer
//! version. Old readers skip what newer writers append; new readers see `None` for what older
//! writers never sent; a different major is refused with both versions named.

mod common;

use common::{fixture, v1_0, v1_1, v1_2, v2_0};
use tern_codec::{DecodeError, SemanticVersion};

#[test]
fn v1_0_reader_skips_what_1_1_and_1_2_append() {
    for (name, understood) in [("order_v1_1", 53), ("order_v1_2", 54)] {
        let bytes = fixture(name);
        let order = v1_0::order::Decoder::decode(&bytes).unwrap();
        assert_eq!(order.order_id(), 1);
        assert_eq!(order.price(), 100);
        let fills: Vec<_> = order
            .fills()
            .map(|fill| (fill.price(), fill.size()))
            .collect();
        assert_eq!(
            fills,
            [(99, 10)],
            "{name}: entries stepped by the wire block length"
        );
        assert_eq!(order.symbol(), "AB");
        assert_eq!(order.acting_minor(), bytes[6]);
        // The reader knows how far it understood; the trailing var data is left unread.
        assert_eq!(order.encoded_length(), understood, "{name}");
        assert!(order.encoded_length() < bytes.len());
    }
    let bytes = fixture("order_v1_1");
    let order = v1_0::order::Decoder::decode(&bytes).unwrap();
    assert_eq!(order.side(), v1_0::Side::Sell);
}

#[test]
fn an_enum_value_from_the_future_decodes_as_unknown() {
    let bytes = fixture("order_v1_2");
    assert_eq!(
        v1_0::order::Decoder::decode(&bytes).unwrap().side(),
        v1_0::Side::Unknown(2)
    );
    assert_eq!(
        v1_1::order::Decoder::decode(&bytes).unwrap().side(),
        v1_1::Side::Unknown(2)
    );
    assert_eq!(
        v1_2::order::Decoder::decode(&bytes).unwrap().side(),
        v1_2::Side::Short
    );
}

#[test]
fn newer_readers_see_none_for_what_older_writers_never_sent() {
    let bytes = fixture("order_v1_0");
    let order = v1_1::order::Decoder::decode(&bytes).unwrap();
    assert_eq!(order.quantity(), None);
    assert_eq!(order.note(), None);
    let fill = order.fills().next().unwrap();
    assert_eq!((fill.price(), fill.size(), fill.venue()), (99, 10, None));
    assert_eq!(order.encoded_length(), bytes.len());

    let order = v1_2::order::Decoder::decode(&bytes).unwrap();
    assert_eq!(
        (order.quantity(), order.flags(), order.trace()),
        (None, None, None)
    );

    let bytes = fixture("order_v1_1");
    let order = v1_2::order::Decoder::decode(&bytes).unwrap();
    assert_eq!(order.quantity(), Some(5));
    assert_eq!(order.note(), Some(&[0xFF][..]));
    assert_eq!((order.flags(), order.trace()), (None, None));
    assert_eq!(order.fills().next().unwrap().venue(), Some(3));
}

#[test]
fn v1_1_reader_reads_the_future_it_knows() {
    let bytes = fixture("order_v1_2");
    let order = v1_1::order::Decoder::decode(&bytes).unwrap();
    assert_eq!(order.quantity(), Some(5));
    assert_eq!(order.note(), Some(&[0xFF][..]));
    assert_eq!(
        order.encoded_length(),
        bytes.len() - 5,
        "the 1.2 trace is left unread"
    );
}

#[test]
fn a_different_major_is_refused_both_ways_naming_both_versions() {
    let error = v1_1::order::Decoder::decode(&fixture("order_v2_0")).unwrap_err();
    assert_eq!(
        error,
        DecodeError::IncompatibleVersion {
            schema_id: 42,
            reader: SemanticVersion::new(1, 1, 0),
            message_major: 2,
            message_minor: 0,
        }
    );
    assert!(error.to_string().contains("2.0.x"));
    assert!(error.to_string().contains("1.1.0"));

    let error = v2_0::order::Decoder::decode(&fixture("order_v1_0")).unwrap_err();
    assert!(matches!(
        error,
        DecodeError::IncompatibleVersion {
            message_major: 1,
            ..
        }
    ));
}

#[test]
fn a_block_shorter_than_its_version_promises_is_refused() {
    // A 1.1 header over a 1.0 block: quantity is promised but missing.
    let mut bytes = fixture("order_v1_0");
    bytes[6] = 1;
    assert!(matches!(
        v1_1::order::Decoder::decode(&bytes),
        Err(DecodeError::BlockTooShort {
            block_length: 17,
            minimum: 21,
            acting_minor: 1,
            ..
        })
    ));
}
