#!/usr/bin/env bash
# Instructions per IPC offer (concurrent and exclusive publication) and per poll of 32 B, counted by callgrind on a fixed
# single-threaded workload (benches/src/bin/offer_poll_instructions.rs). Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tern-benches --bin offer_poll_instructions >&2
out="$(mktemp -d)"
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
  --toggle-collect='*measured_offers*' --toggle-collect='*measured_polls*' \
  --toggle-collect='*measured_exclusive_offers*' --toggle-collect='*measured_batch_polls*' \
  target/release/offer_poll_instructions >&2 2>"$out/valgrind.log"
count=100000
callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null \
  | awk -v count="$count" '
      /::measured_offers \[/ { gsub(",", "", $1); printf "offer: %.1f instructions\n", $1 / count }
      /::measured_polls \[/  { gsub(",", "", $1); printf "poll:  %.1f instructions\n", $1 / count }
      /::measured_exclusive_offers \[/ { gsub(",", "", $1); printf "exclusive offer: %.1f instructions\n", $1 / count }
      /::measured_batch_polls \[/ { gsub(",", "", $1); printf "fragment (polled 256 at a time): %.1f instructions\n", $1 / count }'
rm -rf "$out"
