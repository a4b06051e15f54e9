//! The `tern` binary, run as a user runs it.

use std::process::{Command, Output};

fn tern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .output()
        .expect("tern runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_and_version() {
    let output = tern(&["--help"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("decode"));
    let output = tern(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output).trim(),
        format!("tern {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn decodes_a_captured_datagram() {
    let data = "25000000 00c0 0100 40000000 07000000 e9030000 fbffffff 0000000000000000 68656c6c6f";
    let output = tern(&["decode", data]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("session_id: 7"), "{text}");
    assert!(text.contains("payload=hello"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let output = tern(&["decode", "2500"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("frame 0 is malformed"),
        "{}",
        stderr(&output)
    );
    let output = tern(&["decode", "zz"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not hex"));
    let output = tern(&["decode", "25000000 01c00100"]);
    assert!(
        stderr(&output).contains("frame version 1 is not supported"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn position_math_both_ways() {
    let output = tern(&[
        "position",
        "--term-length",
        "65536",
        "--initial-term-id",
        "-5",
        "--position",
        "131104",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).trim(),
        "position 131104 = term id -3 offset 32"
    );
    let output = tern(&[
        "position",
        "--term-length",
        "65536",
        "--initial-term-id",
        "-5",
        "--term-id",
        "-3",
        "--term-offset",
        "32",
    ]);
    assert_eq!(
        stdout(&output).trim(),
        "term id -3 offset 32 = position 131104"
    );
    let output = tern(&["position", "--term-length", "1000", "--position", "1"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("power of two"));
}
