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

# With `udp`: instructions per idle driver duty cycle and per 32-byte round trip through a driver
# over UDP loopback (benches/src/bin/udp_cycle_instructions.rs), user space only.
if [ "${1:-}" = "udp" ]; then
  cargo build --release -p tern-benches --bin udp_cycle_instructions >&2
  out="$(mktemp -d)"
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
    --toggle-collect='*measured_idle_cycles*' --toggle-collect='*measured_round_trips*' \
    target/release/udp_cycle_instructions >&2 2>"$out/valgrind.log"
  callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null \
    | awk -v count=20000 '
        /::measured_idle_cycles \[/ { gsub(",", "", $1); printf "idle UDP duty cycle: %.0f instructions\n", $1 / count }
        /::measured_round_trips \[/ { gsub(",", "", $1); printf "UDP round trip (offer, one duty cycle, poll): %.0f instructions\n", $1 / count }
        /memset.*erms/ && !seen { gsub(",", "", $1); seen = 1; printf "of all counted, memset: %s instructions (%.0f per measured operation)\n", $1, $1 / (2 * count) }'
  rm -rf "$out"
fi
