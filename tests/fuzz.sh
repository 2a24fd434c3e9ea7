#!/usr/bin/env bash
# Fuzz radio-bridge's parsers of untrusted radio input with cargo-fuzz.
#
# Usage:
#   tests/fuzz.sh [--smoke] [SECONDS] [TARGET...]
#
#   SECONDS   how long to fuzz each target (default 60)
#   TARGET    fuzz targets to run (default: every [[bin]] in
#             radio-bridge/fuzz/Cargo.toml): frame_decoder, kiss_deframer,
#             gwmp_parser, fragment_reassembler
#   --smoke   5 seconds per target (overrides SECONDS), e.g. for CI
#
# Examples:
#   tests/fuzz.sh --smoke                       # every target, 5 s each
#   tests/fuzz.sh 600 fragment_reassembler      # one target, 10 minutes
#
# Exits non-zero if any target crashes (panic, failed assertion, sanitizer
# report, timeout or out-of-memory) or fails to build. The crashing input is
# kept under radio-bridge/fuzz/artifacts/TARGET/; the script prints the
# command that replays it. A target whose source file does not exist yet is
# skipped with a message. The corpus grows in radio-bridge/fuzz/corpus/TARGET/
# and is reused by later runs (both directories are git-ignored).
#
# cargo-fuzz needs nightly-only compiler flags (sanitizers, coverage
# instrumentation). Only a stable toolchain is installed, so this script sets
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept them. cargo-fuzz itself is
# installed from crates.io if missing. CARGO_TARGET_DIR is honoured.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

seconds=60
smoke=false
targets=()
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=true ;;
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

    echo "fuzz.sh: fuzzing $target for ${seconds}s"
    artifacts=$fuzz_dir/artifacts/$target
    started=$(mktemp)
    if cargo fuzz run "$target" -- -max_total_time="$seconds"; then
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
