//! `tern decode` and `tern position`: what the codec defines, for operators.

use std::io::Read;

use anyhow::{Context, Result, bail};
use tern_codec::frame::{DatagramFrames, Frame};
use tern_codec::position::TermGeometry;

/// Arguments of `tern decode`.
#[derive(Debug, clap::Args)]
pub(crate) struct DecodeArgs {
    /// The datagram in hex (spaces allowed); `-` reads it from standard input.
    hex: String,
}

/// Arguments of `tern position`.
#[derive(Debug, clap::Args)]
pub(crate) struct PositionArgs {
    /// Bytes in each term: a power of two.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    term_length: u32,
    /// The stream's initial term id.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    initial_term_id: i32,
    /// A position to split into term id and offset.
    #[arg(long, conflicts_with_all = ["term_id", "term_offset"])]
    position: Option<i64>,
    /// A term id to join with --term-offset.
    #[arg(long, requires = "term_offset", allow_negative_numbers = true)]
    term_id: Option<i32>,
    /// An offset within --term-id.
    #[arg(long, requires = "term_id")]
    term_offset: Option<u32>,
}

pub(crate) fn position(args: &PositionArgs) -> Result<()> {
    let geometry = TermGeometry::new(args.term_length, args.initial_term_id)?;
    match (args.position, args.term_id, args.term_offset) {
        (Some(position), _, _) => {
            if !(0..geometry.max_position()).contains(&position) {
                bail!(
                    "position {position} is outside 0..{} for this term length",
                    geometry.max_position()
                );
            }
            println!(
                "position {position} = term id {} offset {}",
                geometry.term_id(position),
                geometry.term_offset(position)
            );
        }
        (None, Some(term_id), Some(term_offset)) => {
            if term_offset >= args.term_length {
                bail!(
                    "term offset {term_offset} is not below the term length {}",
                    args.term_length
                );
            }
            println!(
                "term id {term_id} offset {term_offset} = position {}",
                geometry.position(term_id, term_offset)
            );
        }
        _ => bail!("give --position, or --term-id with --term-offset"),
    }
    Ok(())
}

pub(crate) fn decode(args: &DecodeArgs) -> Result<()> {
    let text = if args.hex == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        args.hex.clone()
    };
    let datagram = parse_hex(&text)?;
    let mut count = 0;
    for frame in DatagramFrames::new(&datagram) {
        let frame = frame.with_context(|| format!("frame {count} is malformed"))?;
        match frame {
            Frame::Data(data) => println!(
                "{:?} payload={}",
                data.header,
                String::from_utf8_lossy(data.payload).escape_debug()
            ),
            other => println!("{other:?}"),
        }
        count += 1;
    }
    if count == 0 {
        bail!("the datagram is empty");
    }
    Ok(())
}

fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits ({})", digits.len());
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(index, pair)| {
            let pair = std::str::from_utf8(pair).unwrap_or("??");
            u8::from_str_radix(pair, 16)
                .with_context(|| format!("byte {index}: {pair:?} is not hex"))
        })
        .collect()
}
