//! `tern archive`: run an archive, drive a running one, and inspect an archive directory.
//!
//! Commands that talk to a running archive (`record`, `stop-recording`, `replay`) connect to
//! its control stream through the local driver. Commands that read the directory (`list`,
//! `describe`, `dump`, `verify`) work whether or not the archive runs. Commands that change
//! the catalog (`truncate`, `purge`) go through the running archive when there is one, and
//! work on the files when there is not; `mark-valid`, `mark-invalid`, `migrate` and
//! `verify`'s marking need the archive stopped (it holds the catalog's lock).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use tern_archive::archive::{Archive, ArchiveConfig};
use tern_archive::catalog::{Catalog, RecordingDescriptor, RecordingState};
use tern_archive::client::{ArchiveClient, ArchiveClientConfig};
use tern_archive::control_protocol::{self as protocol, REPLAY_FOLLOW_LIVE};
use tern_archive::error::CatalogError;
use tern_archive::inspect::{self, Verdict};
use tern_archive::segment_files;
use tern_archive::segment_writer::Durability;
use tern_engine::agent::{AgentRunner, Clock, IdleStrategy, Idler, SystemClock};
use tern_engine::client::{ClientConfig, FragmentAssembler, FragmentHeader, Tern};

use crate::DirArg;

/// `tern archive` commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ArchiveCommand {
    /// Run an archive against a running driver until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Record every publication of a channel and stream (asks the running archive).
    Record(RecordArgs),
    /// Stop a recording by its id (asks the running archive).
    StopRecording(IdArgs),
    /// List the recordings: an aligned table.
    List(DirOnlyArgs),
    /// Print everything the catalog holds about one recording, and its segment files.
    Describe(IdArgs),
    /// Print a recording's frames with their decoded headers.
    Dump(DumpArgs),
    /// Check recordings frame by frame (all, or one); mark those that fail invalid.
    Verify(VerifyArgs),
    /// Replay a recording: print each message (as `tern sub`), or send it to a channel.
    Replay(ReplayArgs),
    /// Cut a stopped recording back to a position (a frame boundary).
    Truncate(TruncateArgs),
    /// Copy a recording from another archive into the running one (shows progress).
    Replicate(ReplicateArgs),
    /// Delete a stopped recording and its files.
    Purge(IdArgs),
    /// Mark a recording valid (replayable again).
    MarkValid(IdArgs),
    /// Mark a recording invalid (kept, but refused for replay and extension).
    MarkInvalid(IdArgs),
    /// Upgrade the catalog to this build's minor version.
    Migrate(DirOnlyArgs),
}

/// Where the archive's files are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ArchiveDirArg {
    /// The archive directory (default: $TERN_ARCHIVE_DIR, else ./tern-archive).
    #[arg(long)]
    archive_dir: Option<PathBuf>,
}

impl ArchiveDirArg {
    fn resolve(&self) -> PathBuf {
        self.archive_dir.clone().unwrap_or_else(|| {
            std::env::var_os("TERN_ARCHIVE_DIR")
                .map_or_else(|| PathBuf::from("tern-archive"), PathBuf::from)
        })
    }
}

/// How to reach a running archive.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ControlArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The archive's control channel.
    #[arg(long, default_value = "tern:ipc")]
    control_channel: String,
    /// The archive's control stream.
    #[arg(long, default_value_t = protocol::CONTROL_STREAM_ID_DEFAULT)]
    control_stream: i32,
}

impl ControlArgs {
    fn connect(&self) -> Result<(Tern, ArchiveClient)> {
        let tern = Tern::connect(ClientConfig {
            dir: self.dir.resolve(),
            ..ClientConfig::default()
        })
        .context("connecting to the driver")?;
        let client = ArchiveClient::connect(
            &tern,
            ArchiveClientConfig {
                control_channel: self.control_channel.clone(),
                control_stream_id: self.control_stream,
                ..ArchiveClientConfig::default()
            },
        )
        .context("connecting to the archive")?;
        Ok((tern, client))
    }
}

/// The archive's settings, for `tern archive serve` and `tern driver --archive-dir`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ArchiveSettings {
    /// Where control requests arrive.
    #[arg(long, default_value = "tern:ipc")]
    control_channel: String,
    /// Their stream.
    #[arg(long, default_value_t = protocol::CONTROL_STREAM_ID_DEFAULT)]
    control_stream: i32,
    /// Where recording events go.
    #[arg(long, default_value = "tern:ipc")]
    events_channel: String,
    /// Their stream.
    #[arg(long, default_value_t = protocol::EVENTS_STREAM_ID_DEFAULT)]
    events_stream: i32,
    /// Bytes of stream per segment file (e.g. 128m; rounded up to whole terms).
    #[arg(long, default_value = "128m")]
    segment_length: String,
    /// Per-frame CRC32C checksums: true (default) or false.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    checksums: bool,
    /// 0: never sync; 1: sync at segment end and stop (default); 2: sync before the recording
    /// position advances.
    #[arg(long, default_value_t = 1)]
    durability: u8,
    /// Where other archives answer this one when it replicates from them (UDP between
    /// machines: tern:udp?endpoint=this-host:port).
    #[arg(long, default_value = "tern:ipc")]
    replication_response_channel: String,
    /// How recordings write their blocks: pwrite (default) or io_uring.
    #[arg(long, default_value = "pwrite")]
    file_io: String,
}

impl ArchiveSettings {
    pub(crate) fn config(&self, dir: PathBuf) -> Result<ArchiveConfig> {
        let segment_length = tern_engine::channel::parse_size(&self.segment_length)
            .and_then(|length| u32::try_from(length).ok())
            .with_context(|| {
                format!(
                    "--segment-length {}: a size such as 128m, at most 1g",
                    self.segment_length
                )
            })?;
        let durability = Durability::from_level(self.durability)
            .with_context(|| format!("--durability {}: 0, 1 or 2", self.durability))?;
        Ok(ArchiveConfig {
            dir,
            control_channel: self.control_channel.clone(),
            control_stream_id: self.control_stream,
            events_channel: self.events_channel.clone(),
            events_stream_id: self.events_stream,
            segment_length,
            checksums: self.checksums,
            durability,
            replication_response_channel: self.replication_response_channel.clone(),
            file_io: self
                .file_io
                .parse()
                .map_err(|error: String| anyhow::anyhow!("--file-io: {error}"))?,
            ..ArchiveConfig::default()
        })
    }
}

/// Arguments of `tern archive serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    archive_dir: ArchiveDirArg,
    #[command(flatten)]
    settings: ArchiveSettings,
}

/// Arguments of `tern archive record`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecordArgs {
    /// The channel to record.
    channel: String,
    /// The stream.
    #[arg(long)]
    stream: i32,
    #[command(flatten)]
    control: ControlArgs,
}

/// A recording id, and how to reach the archive or its files.
#[derive(Debug, clap::Args)]
pub(crate) struct IdArgs {
    /// The recording.
    id: i64,
    #[command(flatten)]
    archive_dir: ArchiveDirArg,
    #[command(flatten)]
    control: ControlArgs,
}

/// Only the archive directory.
#[derive(Debug, clap::Args)]
pub(crate) struct DirOnlyArgs {
    #[command(flatten)]
    archive_dir: ArchiveDirArg,
}

/// Arguments of `tern archive dump`.
#[derive(Debug, clap::Args)]
pub(crate) struct DumpArgs {
    /// The recording.
    id: i64,
    /// The first frame's position (default: the recording's start).
    #[arg(long)]
    from: Option<i64>,
    /// At most this many frames.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    archive_dir: ArchiveDirArg,
}

/// Arguments of `tern archive verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// One recording (default: all).
    id: Option<i64>,
    /// Write the descriptor checksum again for descriptors whose body you vouch for, then
    /// verify their frames.
    #[arg(long)]
    apply_checksum: bool,
    #[command(flatten)]
    archive_dir: ArchiveDirArg,
}

/// Arguments of `tern archive replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The recording.
    id: i64,
    /// Send the replay to this channel instead of printing it.
    #[arg(long)]
    to: Option<String>,
    /// The stream to replay on (default: 1000 + the recording id... any free one with --to).
    #[arg(long)]
    stream: Option<i32>,
    /// Where to start (default: the recording's start).
    #[arg(long)]
    from: Option<i64>,
    /// How many bytes (default: what is recorded now).
    #[arg(long)]
    length: Option<i64>,
    /// Follow a live recording until it stops.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    control: ControlArgs,
}

/// Arguments of `tern archive replicate`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplicateArgs {
    /// The recording in the source archive.
    id: i64,
    /// The source archive's control channel (reachable from this archive's driver).
    #[arg(long)]
    source_control_channel: String,
    /// The source archive's control stream.
    #[arg(long, default_value_t = protocol::CONTROL_STREAM_ID_DEFAULT)]
    source_control_stream: i32,
    /// Where the source replays to (a channel this archive's driver receives on).
    #[arg(long)]
    replication_channel: String,
    /// A stopped recording here to extend (default: a new recording).
    #[arg(long)]
    destination_id: Option<i64>,
    /// Keep copying while the source recording is live.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    control: ControlArgs,
}

/// Arguments of `tern archive truncate`.
#[derive(Debug, clap::Args)]
pub(crate) struct TruncateArgs {
    /// The recording.
    id: i64,
    /// The new stop position (a frame boundary).
    position: i64,
    #[command(flatten)]
    archive_dir: ArchiveDirArg,
    #[command(flatten)]
    control: ControlArgs,
}

pub(crate) fn run(command: &ArchiveCommand) -> Result<()> {
    match command {
        ArchiveCommand::Serve(args) => serve(args),
        ArchiveCommand::Record(args) => {
            let (_tern, mut client) = args.control.connect()?;
            let id = client.start_recording(&args.channel, args.stream)?;
            println!(
                "recording {} stream {} (subscription {id})",
                args.channel, args.stream
            );
            Ok(())
        }
        ArchiveCommand::StopRecording(args) => {
            let (_tern, mut client) = args.control.connect()?;
            client.stop_recording_by_id(args.id)?;
            println!("recording {} stopped", args.id);
            Ok(())
        }
        ArchiveCommand::List(args) => list(&args.archive_dir.resolve()),
        ArchiveCommand::Describe(args) => describe(&args.archive_dir.resolve(), args.id),
        ArchiveCommand::Dump(args) => dump(args),
        ArchiveCommand::Verify(args) => verify(args),
        ArchiveCommand::Replay(args) => replay(args),
        ArchiveCommand::Truncate(args) => truncate(args),
        ArchiveCommand::Replicate(args) => replicate(args),
        ArchiveCommand::Purge(args) => purge(args),
        ArchiveCommand::MarkValid(args) => mark(args, RecordingState::Valid),
        ArchiveCommand::MarkInvalid(args) => mark(args, RecordingState::Invalid),
        ArchiveCommand::Migrate(args) => migrate(&args.archive_dir.resolve()),
    }
}

/// Starts an archive on its own thread against the driver in `driver_dir`.
pub(crate) fn start_archive(driver_dir: &Path, config: ArchiveConfig) -> Result<AgentRunner> {
    let tern = Tern::connect(ClientConfig {
        dir: driver_dir.to_path_buf(),
        ..ClientConfig::default()
    })
    .context("connecting the archive to the driver")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = config.dir.clone();
    let archive = Archive::launch(config, tern, clock.now())
        .with_context(|| format!("starting the archive in {}", dir.display()))?;
    AgentRunner::start(Box::new(archive), IdleStrategy::default(), clock)
        .context("starting the archive's thread")
}

fn serve(args: &ServeArgs) -> Result<()> {
    let config = args.settings.config(args.archive_dir.resolve())?;
    let dir = config.dir.clone();
    // Handlers first: a signal that arrives while the archive repairs its files at start-up
    // stops it cleanly afterwards rather than killing it in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut runner = start_archive(&args.dir.resolve(), config)?;
    eprintln!(
        "tern archive {} serving {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        dir.display(),
        std::process::id()
    );
    while !stop.load(Ordering::Acquire) && runner.is_running() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let failure = runner.failure().map(str::to_owned);
    runner.close();
    if let Some(failure) = failure {
        bail!("the archive stopped because {failure}");
    }
    eprintln!("tern archive stopped");
    Ok(())
}

fn state_name(state: RecordingState) -> &'static str {
    match state {
        RecordingState::Valid => "valid",
        RecordingState::Invalid => "invalid",
        RecordingState::Deleted => "deleted",
        RecordingState::Free => "free",
        RecordingState::Unknown(_) => "unknown",
    }
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub(crate) fn utc(epoch_ms: i64) -> String {
    let seconds = epoch_ms.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn list(dir: &Path) -> Result<()> {
    let catalog = Catalog::open_read_only(dir)?;
    let mut rows = vec![
        [
            "id",
            "state",
            "stream",
            "session",
            "start",
            "stop",
            "size",
            "started (UTC)",
            "stopped (UTC)",
            "channel",
        ]
        .map(str::to_owned),
    ];
    for recording_id in 0..catalog.next_recording_id() {
        match catalog.descriptor(recording_id) {
            Ok(descriptor) => rows.push([
                recording_id.to_string(),
                state_name(descriptor.state).to_owned(),
                descriptor.stream_id.to_string(),
                descriptor.session_id.to_string(),
                descriptor.start_position.to_string(),
                descriptor.stop_position.to_string(),
                HumanBytes(u64::try_from(descriptor.length()).unwrap_or(0)).to_string(),
                utc(descriptor.start_timestamp),
                if descriptor.is_active() {
                    "recording".to_owned()
                } else {
                    utc(descriptor.stop_timestamp)
                },
                descriptor.channel.clone(),
            ]),
            Err(error) => rows.push([
                recording_id.to_string(),
                "corrupt".to_owned(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                error.to_string(),
            ]),
        }
    }
    let mut widths = [0usize; 10];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index == row.len() - 1 {
                line.push_str(cell);
            } else if (2..=6).contains(&index) || index == 0 {
                line.push_str(&format!("{cell:>width$}  "));
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn describe(dir: &Path, recording_id: i64) -> Result<()> {
    let catalog = Catalog::open_read_only(dir)?;
    let descriptor = catalog.descriptor(recording_id)?;
    let RecordingDescriptor {
        recording_id,
        state,
        start_position,
        stop_position,
        start_timestamp,
        stop_timestamp,
        origin_position,
        initial_term_id,
        term_length,
        mtu,
        segment_length,
        session_id,
        stream_id,
        ref channel,
        ref source_identity,
    } = descriptor;
    println!("recording        {recording_id}");
    println!("state            {}", state_name(state));
    println!("channel          {channel}");
    println!("stream           {stream_id}");
    println!("session          {session_id}");
    println!("source           {source_identity}");
    println!("start position   {start_position}");
    println!(
        "stop position    {stop_position}{}",
        if descriptor.is_active() {
            " (recording)"
        } else {
            ""
        }
    );
    println!(
        "length           {} ({} bytes)",
        HumanBytes(u64::try_from(descriptor.length()).unwrap_or(0)),
        descriptor.length()
    );
    println!("origin position  {origin_position}");
    println!(
        "started          {} UTC ({start_timestamp})",
        utc(start_timestamp)
    );
    if stop_timestamp >= 0 {
        println!(
            "stopped          {} UTC ({stop_timestamp})",
            utc(stop_timestamp)
        );
    }
    println!("initial term id  {initial_term_id}");
    println!("term length      {term_length}");
    println!("mtu              {mtu}");
    println!("segment length   {segment_length}");
    let segments = segment_files::list_segments(dir, recording_id)?;
    let names: Vec<String> = segments
        .iter()
        .map(|base| tern_archive::segment::segment_file_name(recording_id, *base))
        .collect();
    println!("segment files    {} {}", names.len(), names.join(" "));
    Ok(())
}

/// A progress bar on standard error when it is a terminal (and, when `lines_on_stdout`, only
/// when standard output is not: lines printed there are their own progress).
fn progress_bar(length: u64, lines_on_stdout: bool) -> ProgressBar {
    let visible =
        std::io::stderr().is_terminal() && !(lines_on_stdout && std::io::stdout().is_terminal());
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn dump(args: &DumpArgs) -> Result<()> {
    let dir = args.archive_dir.resolve();
    let catalog = Catalog::open_read_only(&dir)?;
    let descriptor = catalog.descriptor(args.id)?;
    let from = args.from.unwrap_or(descriptor.start_position);
    let bar = progress_bar(
        u64::try_from(descriptor.stop_position - from).unwrap_or(0),
        true,
    );
    bar.set_message(format!("dump {}", args.id));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut write_error = None;
    let end = inspect::walk_frames(
        &dir,
        &descriptor,
        from,
        args.count.unwrap_or(u64::MAX),
        |frame| {
            if write_error.is_some() {
                return;
            }
            bar.set_position(u64::try_from(frame.position - from).unwrap_or(0));
            let kind = if frame.frame_type == tern_codec::frame::PAD_FRAME_TYPE {
                "PAD "
            } else {
                "DATA"
            };
            let head: String = frame
                .payload_head
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            if let Err(error) = writeln!(
                out,
                "{:>12} {kind} len={:<6} flags={:#04x} term={}@{:<8} session={} stream={} reserved={:#018x} {head}",
                frame.position,
                frame.frame_length,
                frame.flags,
                frame.term_id,
                frame.term_offset,
                frame.session_id,
                frame.stream_id,
                frame.reserved_value
            ) {
                write_error = Some(error);
            }
        },
    );
    bar.finish_and_clear();
    if let Some(error) = write_error
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(error).context("writing standard output");
    }
    out.flush().ok();
    let end = end?;
    eprintln!("dumped recording {} from {from} to {end}", args.id);
    Ok(())
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let dir = args.archive_dir.resolve();
    // The writer's lock when the archive is stopped: failures are then marked invalid. A
    // running archive holds the lock; verify then reads and reports only.
    let (catalog, writable) = match Catalog::open(&dir) {
        Ok(catalog) => (catalog, true),
        Err(CatalogError::Locked { .. }) => {
            eprintln!("the archive is running: verifying read-only (nothing will be marked)");
            (Catalog::open_read_only(&dir)?, false)
        }
        Err(error) => return Err(error.into()),
    };
    if args.apply_checksum && !writable {
        bail!("--apply-checksum writes the catalog: stop the archive first");
    }
    let ids: Vec<i64> = match args.id {
        Some(id) => vec![id],
        None => (0..catalog.next_recording_id()).collect(),
    };
    let mut failures = 0;
    for recording_id in ids {
        if args.apply_checksum
            && matches!(
                catalog.descriptor(recording_id),
                Err(CatalogError::ChecksumMismatch { .. })
            )
        {
            let checksum = catalog.apply_checksum(recording_id)?;
            println!("recording {recording_id}: descriptor checksum applied ({checksum:#010x})");
        }
        let length = catalog
            .descriptor(recording_id)
            .map_or(0, |descriptor| descriptor.length());
        let start = catalog
            .descriptor(recording_id)
            .map_or(0, |descriptor| descriptor.start_position);
        let bar = progress_bar(u64::try_from(length).unwrap_or(0), false);
        bar.set_message(format!("verify {recording_id}"));
        let verdict = inspect::verify_recording(&dir, &catalog, recording_id, |position| {
            bar.set_position(u64::try_from(position - start).unwrap_or(0));
        })?;
        bar.finish_and_clear();
        match verdict {
            Verdict::Valid { frames } => println!(
                "recording {recording_id}: valid ({frames} frames, {})",
                HumanBytes(u64::try_from(length).unwrap_or(0))
            ),
            Verdict::Deleted {
                leftover_segments: 0,
            } => println!("recording {recording_id}: deleted"),
            Verdict::Deleted { leftover_segments } => {
                println!(
                    "recording {recording_id}: deleted, but {leftover_segments} segment files remain"
                );
            }
            Verdict::BadDescriptor(reason) => {
                failures += 1;
                println!("recording {recording_id}: INVALID descriptor: {reason}");
            }
            Verdict::BadData { position, reason } => {
                failures += 1;
                println!("recording {recording_id}: INVALID at position {position}: {reason}");
                if writable {
                    catalog.set_state(recording_id, RecordingState::Invalid)?;
                    println!("recording {recording_id}: marked invalid");
                }
            }
        }
    }
    for orphan in inspect::orphan_segments(&dir, &catalog)? {
        println!("{orphan}: a segment file of no recording in the catalog");
    }
    if failures > 0 {
        bail!("{failures} recording(s) failed verification");
    }
    Ok(())
}

fn replay(args: &ReplayArgs) -> Result<()> {
    let (tern, mut client) = args.control.connect()?;
    let position = args.from.unwrap_or(-1);
    let length = if args.follow {
        REPLAY_FOLLOW_LIVE
    } else {
        args.length.unwrap_or(-1)
    };
    if let Some(channel) = &args.to {
        let stream = args.stream.context("--to needs --stream")?;
        let replay_id = client.replay(args.id, position, length, channel, stream)?;
        println!(
            "replay {replay_id} of recording {} to {channel} stream {stream}",
            args.id
        );
        return Ok(());
    }
    // Printed here: a stream of this process's own on IPC.
    let stream = args.stream.unwrap_or_else(|| {
        i32::try_from(std::process::id() % 0x3FFF_FFFF).unwrap_or(0) | 0x4000_0000
    });
    let mut subscription = tern.add_subscription("tern:ipc", stream)?;
    client.replay(args.id, position, length, "tern:ipc", stream)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let out = std::cell::RefCell::new(std::io::BufWriter::new(std::io::stdout().lock()));
    let mut assembler = FragmentAssembler::new(|message: &[u8], _: &FragmentHeader| {
        let line = String::from_utf8_lossy(message);
        let _ = writeln!(out.borrow_mut(), "{line}");
    });
    let mut idler = Idler::new(IdleStrategy::default());
    let mut seen_image = false;
    while !stop.load(Ordering::Acquire) {
        let work = subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            256,
        );
        let images = subscription.images();
        seen_image |= !images.is_empty();
        if seen_image
            && work == 0
            && images
                .iter()
                .all(|image| image.is_end_of_stream() || image.is_closed())
        {
            break;
        }
        if work == 0 {
            out.borrow_mut().flush().ok();
        }
        idler.idle(work);
    }
    drop(assembler);
    out.borrow_mut().flush().ok();
    Ok(())
}

fn replicate(args: &ReplicateArgs) -> Result<()> {
    use tern_archive::client::Request;
    use tern_archive::control_protocol::{RecordingSignal, ResponseCode};
    let (_tern, mut client) = args.control.connect()?;
    let correlation_id = client.send(&Request::Replicate {
        source_recording_id: args.id,
        destination_recording_id: args.destination_id.unwrap_or(-1),
        source_control_channel: &args.source_control_channel,
        source_control_stream_id: args.source_control_stream,
        replication_channel: &args.replication_channel,
        follow: args.follow,
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut replication_id = None;
    let mut copy = None;
    let bar = progress_bar(0, false);
    bar.set_message(format!("replicate {}", args.id));
    let mut idler = Idler::new(IdleStrategy::Sleep(Duration::from_millis(10)));
    loop {
        if stop.load(Ordering::Acquire) {
            if let Some(id) = replication_id {
                client.stop_replication(id)?;
            }
            bar.abandon();
            bail!("interrupted: replication stopped");
        }
        let work = client.poll();
        while let Some(response) = client.take_response(correlation_id) {
            if response.code != ResponseCode::Ok {
                bar.abandon();
                bail!(
                    "replication failed: {:?}: {}",
                    response.code,
                    response.message
                );
            }
            replication_id = Some(response.relevant_id);
        }
        while let Some(signal) = client.take_signal(correlation_id) {
            match signal.signal {
                RecordingSignal::Replicate => {
                    copy = Some(signal.recording_id);
                    if signal.position >= 0 {
                        bar.set_length(u64::try_from(signal.position).unwrap_or(0));
                    }
                }
                RecordingSignal::ReplicateEnd => {
                    bar.finish_and_clear();
                    println!(
                        "recording {} of {} copied as recording {} (stop {})",
                        args.id, args.source_control_channel, signal.recording_id, signal.position
                    );
                    return Ok(());
                }
                RecordingSignal::Unknown(_) => {}
            }
        }
        if let Some(recording_id) = copy
            && let Ok(Some(position)) = client.recording_position(recording_id)
        {
            bar.set_position(u64::try_from(position).unwrap_or(0));
        }
        idler.idle(work);
    }
}

/// Runs `through_archive` when the archive is running (the catalog is locked), else opens the
/// catalog for writing and runs `offline`.
fn with_archive_or_files(
    archive_dir: &Path,
    control: &ControlArgs,
    through_archive: impl FnOnce(&mut ArchiveClient) -> Result<()>,
    offline: impl FnOnce(&mut Catalog) -> Result<()>,
) -> Result<()> {
    match Catalog::open(archive_dir) {
        Ok(mut catalog) => offline(&mut catalog),
        Err(CatalogError::Locked { .. }) => {
            let (_tern, mut client) = control.connect()?;
            through_archive(&mut client)
        }
        Err(error) => Err(error.into()),
    }
}

fn truncate(args: &TruncateArgs) -> Result<()> {
    let dir = args.archive_dir.resolve();
    with_archive_or_files(
        &dir,
        &args.control,
        |client| Ok(client.truncate_recording(args.id, args.position)?),
        |catalog| {
            let descriptor = catalog.descriptor(args.id)?;
            if descriptor.is_active() {
                bail!(
                    "recording {} is active (an archive that crashed repairs it when it starts)",
                    args.id
                );
            }
            if args.position < descriptor.start_position || args.position > descriptor.stop_position
            {
                bail!(
                    "position {} is not in [{}, {}]",
                    args.position,
                    descriptor.start_position,
                    descriptor.stop_position
                );
            }
            if !segment_files::frame_starts_at(&dir, &descriptor, args.position)? {
                bail!(
                    "no frame of recording {} starts at {}",
                    args.id,
                    args.position
                );
            }
            segment_files::cut_at(&dir, &descriptor, args.position)?;
            catalog.stop(args.id, args.position, descriptor.stop_timestamp)?;
            catalog.flush()?;
            Ok(())
        },
    )?;
    println!("recording {} truncated to {}", args.id, args.position);
    Ok(())
}

fn purge(args: &IdArgs) -> Result<()> {
    let dir = args.archive_dir.resolve();
    with_archive_or_files(
        &dir,
        &args.control,
        |client| Ok(client.purge_recording(args.id)?),
        |catalog| {
            let descriptor = catalog.descriptor(args.id)?;
            if descriptor.is_active() {
                bail!("recording {} is active", args.id);
            }
            catalog.set_state(args.id, RecordingState::Deleted)?;
            catalog.flush()?;
            segment_files::delete_all_segments(&dir, args.id)?;
            Ok(())
        },
    )?;
    println!("recording {} purged", args.id);
    Ok(())
}

fn mark(args: &IdArgs, state: RecordingState) -> Result<()> {
    let dir = args.archive_dir.resolve();
    let catalog = Catalog::open(&dir).map_err(|error| match error {
        CatalogError::Locked { .. } => {
            anyhow::anyhow!("{error}: stop the archive to change a recording's state")
        }
        other => other.into(),
    })?;
    let found = catalog.raw_state(args.id)?;
    if found == RecordingState::Deleted.to_wire() {
        bail!("recording {} is deleted: its files are gone", args.id);
    }
    catalog.set_state(args.id, state)?;
    catalog.flush()?;
    println!("recording {} marked {}", args.id, state_name(state));
    Ok(())
}

fn migrate(dir: &Path) -> Result<()> {
    let bar = progress_bar(0, false);
    bar.set_message("migrate");
    let found = inspect::migrate(dir, |done, total| {
        bar.set_length(u64::try_from(total).unwrap_or(0));
        bar.set_position(u64::try_from(done).unwrap_or(0));
    })?;
    bar.finish_and_clear();
    let current = tern_archive::catalog::ARCHIVE_CATALOG_VERSION;
    if found == current {
        println!("the catalog is version {current}: nothing to migrate");
    } else {
        println!("the catalog was migrated from {found} to {current}");
    }
    Ok(())
}
