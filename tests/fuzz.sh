#!/usr/bin/env bash
# Fuzz radio-bridge's parsers of untrusted radio input with cargo-fuzz.
#
# Usage:
#   tests/fuzz.sh [--smoke] [--runs N] [SECONDS] [TARGET...]
#
#   SECONDS   how long to fuzz each target (default 60)
#   --runs N  stop each target after N executions instead (SECONDS is then
#             only an upper bound; default one day)
#   TARGET    fuzz targets to run (default: every [[bin]] in
#             radio-bridge/fuzz/Cargo.toml): frame_decoder, kiss_deframer,
#             gwmp_parser, fragment_reassembler
#   --smoke   5 seconds per target (overrides SECONDS), e.g. for CI
#
# Examples:
#   tests/fuzz.sh --smoke                       # every target, 5 s each
#   tests/fuzz.sh 600 fragment_reassembler      # one target, 10 minutes
#   tests/fuzz.sh --runs 10000000 kiss_deframer # one target, 10 million inputs
#
# Exits non-zero if any target crashes (panic, failed assertion, sanitizer
# report, timeout or out-of-memory) or fails to build. The crashing input is
# kept under radio-bridge/fuzz/artifacts/TARGET/; the script prints the
# command that replays it. A target whose source file does not exist yet is
# skipped with a message. The corpus grows in radio-bridge/fuzz/corpus/TARGET/
# and is reused by later runs (both directories are git-ignored). Before each
# run the corpus is seeded with every frame of the test vectors in
# docs/protocol.md §9, wrapped as the target reads its input (raw for
# frame_decoder, a KISS data frame for kiss_deframer, a PUSH_DATA datagram
# for gwmp_parser, a raw push for fragment_reassembler), so the fuzzer
# starts from real Seed frames rather than from nothing.
#
# cargo-fuzz needs nightly-only compiler flags (sanitizers, coverage
# instrumentation). Only a stable toolchain is installed, so this script sets
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept them. cargo-fuzz itself is
# installed from crates.io if missing. CARGO_TARGET_DIR is honoured.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

seconds=60
smoke=false
runs=
targets=()
expect_runs=false
for arg in "$@"; do
    if $expect_runs; then
        [[ "$arg" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --runs takes a number, not $arg" >&2; exit 2; }
        runs=$arg
        seconds=86400
        expect_runs=false
        continue
    fi
    case "$arg" in
        --smoke) smoke=true ;;
        --runs) expect_runs=true ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
        *)
            if [[ ${#targets[@]} -eq 0 && "$arg" =~ ^[0-9]+$ ]]; then
                seconds=$arg
            else
                targets+=("$arg")
            fi
            ;;
    esac
done
$smoke && seconds=5

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
crate_dir=$repo_root/radio-bridge
fuzz_dir=$crate_dir/fuzz

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# Every [[bin]] in the fuzz manifest, in order, with its source path.
declare -A source_of
all_targets=()
while read -r name path; do
    source_of[$name]=$path
    all_targets+=("$name")
done < <(awk -F' *= *' '
    /^\[\[bin\]\]/ { name = "" }
    $1 == "name" { gsub(/"/, "", $2); name = $2 }
    $1 == "path" && name != "" { gsub(/"/, "", $2); print name, $2 }
' "$fuzz_dir/Cargo.toml")
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")

# The test vectors' frames as "name hex" lines (frames written with the
# `00*N` repetition shorthand are left out: too long for a seed).
vector_frames() {
    awk '/^name: / { name = $2 } /^frame: / && $2 !~ /\*/ { print name, $2 }' \
        "$repo_root/docs/protocol.md"
}

# Writes one seed per test vector into TARGET's corpus.
seed_corpus() {
    local target=$1 dir=$fuzz_dir/corpus/$1 name hex bytes
    mkdir -p "$dir"
    while read -r name hex; do
        bytes=$(( ${#hex} / 2 ))
        case "$target" in
            frame_decoder) printf '%s' "$hex" | xxd -r -p ;;
            kiss_deframer)
                # Chunk size 7, then FEND, data command, escaped frame, FEND.
                printf '07c000%sc0' "$(printf '%s' "$hex" | fold -w2 |
                    sed -e 's/^db$/dbdd/' -e 's/^c0$/dbdc/' | tr -d '\n')" | xxd -r -p ;;
            gwmp_parser)
                printf '\x02\x12\x34\x00\x01\x02\x03\x04\x05\x06\x07\x08'
                printf '{"rxpk":[{"tmst":1,"freq":869.525,"rfch":0,"stat":1,"modu":"LORA",'
                printf '"datr":"SF9BW125","codr":"4/5","rssi":-80,"lsnr":7.5,"size":%d,"data":"%s"}]}' \
                    "$bytes" "$(printf '%s' "$hex" | xxd -r -p | base64 -w0)" ;;
            fragment_reassembler)
                (( bytes <= 255 )) || continue
                # control 0 (push as is), no clock step, length, frame.
                printf '0000%02x%s' "$bytes" "$hex" | xxd -r -p ;;
            *) continue ;;
        esac >"$dir/vector-$name"
    done < <(vector_frames)
    echo "fuzz.sh: $target corpus seeded with $(ls "$dir" | grep -c '^vector-') test vectors"
}

passed=()
skipped=()
failed=()
cd "$crate_dir"
for target in "${targets[@]}"; do
    path=${source_of[$target]:-}
    if [[ -z "$path" ]]; then
        echo "fuzz.sh: no target named $target in $fuzz_dir/Cargo.toml" >&2
        failed+=("$target (unknown)")
        continue
    fi
    if [[ ! -f "$fuzz_dir/$path" ]]; then
        echo "fuzz.sh: skipping $target: $fuzz_dir/$path does not exist yet"
        skipped+=("$target")
        continue
    fi

    echo "fuzz.sh: building $target"
    if ! cargo fuzz build "$target"; then
        echo "fuzz.sh: $target FAILED to build" >&2
        failed+=("$target (build)")
        continue
    fi

    seed_corpus "$target"
    echo "fuzz.sh: fuzzing $target for ${seconds}s"
    artifacts=$fuzz_dir/artifacts/$target
    started=$(mktemp)
    if cargo fuzz run "$target" -- -max_total_time="$seconds" ${runs:+-runs="$runs"}; then
        passed+=("$target")
    else
        echo "fuzz.sh: $target FOUND A CRASH" >&2
        while IFS= read -r input; do
            echo "fuzz.sh:   input:  $input" >&2
            echo "fuzz.sh:   replay: (cd $crate_dir && RUSTC_BOOTSTRAP=1 cargo fuzz run $target $input)" >&2
        done < <(find "$artifacts" -type f -newer "$started" 2>/dev/null)
        failed+=("$target (crash)")
    fi
    rm -f "$started"
done

echo
echo "fuzz.sh: ${seconds}s per target"
echo "  passed:  ${passed[*]:-none}"
echo "  skipped: ${skipped[*]:-none}"
echo "  failed:  ${failed[*]:-none}"
[[ ${#failed[@]} -eq 0 ]]
