//! `tern`: the operator CLI.
fn main() {}
