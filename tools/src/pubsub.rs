//! `tern pub` and `tern sub`: the console tools of the messaging world.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tern_engine::agent::{IdleStrategy, Idler};
use tern_engine::client::{ClientConfig, FragmentAssembler, OfferResult, Publication, Tern};
use tern_engine::logbuffer::frame_header::FragmentHeader;

use crate::DirArg;

/// Arguments of `tern pub`.
#[derive(Debug, clap::Args)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The channel.
    #[arg(long, default_value = "tern:ipc")]
    channel: String,
    /// The stream id.
    #[arg(long, default_value_t = 1001)]
    stream: i32,
    /// How long to wait for a subscriber, and for back-pressure to clear, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Publish generated messages instead of standard input: this many.
    #[arg(long)]
    count: Option<u64>,
    /// Generated messages per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Bytes per generated message (at least 8).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// A destination to send to (`tern:udp?endpoint=host:port`), for a channel in manual
    /// multi-destination mode (`control=host:port|control-mode=manual`); repeatable.
    #[arg(long = "destination")]
    destinations: Vec<String>,
}

/// Arguments of `tern sub`.
#[derive(Debug, clap::Args)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The channel.
    #[arg(long, default_value = "tern:ipc")]
    channel: String,
    /// The stream id.
    #[arg(long, default_value_t = 1001)]
    stream: i32,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Only count messages; print the total at exit.
    #[arg(long)]
    quiet: bool,
    /// Check that generated messages (`tern pub --count`) arrive exactly once and in order:
    /// each session's sequence numbers from 0 up by one. The first message out of sequence
    /// ends the command with an error naming it.
    #[arg(long)]
    verify: bool,
    /// A destination to receive on (`tern:udp?endpoint=host:port`), for a multi-destination
    /// subscription (`--channel 'tern:udp?control-mode=manual'`); repeatable.
    #[arg(long = "destination")]
    destinations: Vec<String>,
}

fn connect(dir: &DirArg) -> Result<Tern> {
    let dir = dir.resolve();
    Tern::connect(ClientConfig {
        dir: dir.clone(),
        ..ClientConfig::default()
    })
    .with_context(|| format!("connecting to the driver in {}", dir.display()))
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Offers until the message is in, waiting out back-pressure up to `timeout`.
fn offer_retrying(publication: &Publication, message: &[u8], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut idler = Idler::new(IdleStrategy::default());
    loop {
        match publication.offer(message) {
            OfferResult::Ok(_) => return Ok(()),
            OfferResult::AdminAction => {}
            OfferResult::BackPressured | OfferResult::NotConnected => {
                if Instant::now() > deadline {
                    bail!("the stream stayed back-pressured or unconnected for {timeout:?}");
                }
                idler.idle(0);
            }
            other => bail!("cannot publish: {other:?}"),
        }
    }
}

pub(crate) fn publish(args: &PubArgs) -> Result<()> {
    let tern = connect(&args.dir)?;
    let publication = tern.add_publication(&args.channel, args.stream)?;
    for destination in &args.destinations {
        publication
            .add_destination(destination)
            .with_context(|| format!("adding destination {destination}"))?;
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    publication
        .wait_connected(timeout)
        .with_context(|| format!("no subscriber on {} stream {}", args.channel, args.stream))?;
    let stop = stop_flag()?;
    let mut sent = 0u64;
    if let Some(count) = args.count {
        if args.size < 8 {
            bail!("--size must be at least 8 (a sequence number)");
        }
        let mut message = vec![b'.'; args.size];
        let start = Instant::now();
        while sent < count && !stop.load(Ordering::Acquire) {
            message[..8].copy_from_slice(&sent.to_le_bytes());
            offer_retrying(&publication, &message, timeout)?;
            sent += 1;
            if let Some(rate) = args.rate.filter(|rate| *rate > 0) {
                let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
                while Instant::now() < due {
                    std::thread::yield_now();
                }
            }
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let line = line.context("reading standard input")?;
            offer_retrying(&publication, line.as_bytes(), timeout)?;
            sent += 1;
        }
    }
    // Wait for subscribers to read everything before the publication goes.
    let deadline = Instant::now() + timeout;
    while publication.is_connected() && !publication.is_drained() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("published {sent} messages");
    Ok(())
}

pub(crate) fn subscribe(args: &SubArgs) -> Result<()> {
    let tern = connect(&args.dir)?;
    let mut subscription = tern.add_subscription(&args.channel, args.stream)?;
    for destination in &args.destinations {
        subscription
            .add_destination(destination)
            .with_context(|| format!("adding destination {destination}"))?;
    }
    let stop = stop_flag()?;
    let received = Cell::new(0u64);
    let out = RefCell::new(std::io::BufWriter::new(std::io::stdout().lock()));
    let write_error: RefCell<Option<std::io::Error>> = RefCell::new(None);
    // Each session's next sequence number, with --verify.
    let expected: RefCell<Vec<(i32, u64)>> = RefCell::new(Vec::new());
    let out_of_order: RefCell<Option<String>> = RefCell::new(None);
    let mut assembler = FragmentAssembler::new(|message: &[u8], header: &FragmentHeader| {
        received.set(received.get() + 1);
        if args.verify && out_of_order.borrow().is_none() {
            let fault = check_sequence(&mut expected.borrow_mut(), header.session_id, message);
            *out_of_order.borrow_mut() = fault;
        }
        if !args.quiet && write_error.borrow().is_none() {
            let line = String::from_utf8_lossy(message);
            if let Err(error) = writeln!(out.borrow_mut(), "{line}") {
                *write_error.borrow_mut() = Some(error);
            }
        }
    });
    let mut idler = Idler::new(IdleStrategy::default());
    while !stop.load(Ordering::Acquire)
        && write_error.borrow().is_none()
        && out_of_order.borrow().is_none()
    {
        // With --count, read one fragment at a time so as not to consume past the count.
        let limit = if args.count.is_some() { 1 } else { 256 };
        let work = subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            limit,
        );
        if args.count.is_some_and(|count| received.get() >= count) {
            break;
        }
        if let Some(error) = tern.fatal_error() {
            bail!(error);
        }
        if work == 0 {
            out.borrow_mut().flush().ok();
        }
        idler.idle(work);
    }
    drop(assembler);
    out.borrow_mut().flush().ok();
    if let Some(error) = write_error.into_inner()
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(error).context("writing standard output");
    }
    if let Some(fault) = out_of_order.into_inner() {
        bail!("after {} messages: {fault}", received.get());
    }
    if args.quiet {
        let verified = if args.verify { ", in order" } else { "" };
        println!("{} messages{verified}", received.get());
    }
    Ok(())
}

/// Checks a generated message against its session's next sequence number; what is wrong, if
/// anything.
fn check_sequence(
    expected: &mut Vec<(i32, u64)>,
    session_id: i32,
    message: &[u8],
) -> Option<String> {
    let Some(sequence) = message
        .first_chunk::<8>()
        .map(|bytes| u64::from_le_bytes(*bytes))
    else {
        return Some(format!(
            "session {session_id}: a {}-byte message has no sequence number",
            message.len()
        ));
    };
    let next = match expected
        .iter_mut()
        .find(|(session, _)| *session == session_id)
    {
        Some((_, next)) => next,
        None => {
            expected.push((session_id, 0));
            &mut expected.last_mut().expect("just pushed").1
        }
    };
    if sequence != *next {
        let what = if sequence > *next {
            "lost"
        } else {
            "repeated or reordered"
        };
        return Some(format!(
            "session {session_id}: message {sequence} arrived where {} was due ({what})",
            *next
        ));
    }
    *next += 1;
    None
}
