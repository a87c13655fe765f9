#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a fixed time; exits 1 when any target
# found a crash (its reproducer is in fuzz/artifacts/<target>/). What CI runs
# (.ci/run) and how a long run is made: docs/security.md, "Fuzzing".
#
#   bash fuzz/run.sh SECONDS [TARGET...]     every target, or the ones named
#
# Environment: FUZZ_CORES (a taskset CPU list, default: any), FUZZ_TOOLCHAIN
# (default: nightly), FUZZ_TARGET_DIR (cargo's target directory, default
# fuzz/target), FUZZ_BIN (a directory of targets built before: no build, so a long
# run keeps one build while the tree changes). Inputs that find new coverage go to
# fuzz/target/corpus/<target> (not committed); fuzz/corpus/<target> is only read.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
toolchain=${FUZZ_TOOLCHAIN:-nightly}
all=(smtp_command smtp_session smtp_data smtp_auth smtp_reply dsn_build
    control_request control_config mta_config)
targets=("${@:-${all[@]}}")

# No sanitizer: the workspace forbids unsafe code, so AddressSanitizer would find
# little and cost half the speed; debug assertions and overflow checks stay on.
# 16 codegen units keep the build of the dependencies within CI's budget.
bin=${FUZZ_BIN:-}
if [[ -z $bin ]]; then
    target_dir=${FUZZ_TARGET_DIR:-$PWD/target}
    cargo "+$toolchain" fuzz build --sanitizer none --codegen-units 16 --target-dir "$target_dir"
    bin=$target_dir/x86_64-unknown-linux-gnu/release
fi

options() {
    case $1 in
    smtp_command | smtp_session | smtp_reply) echo "-dict=dict/smtp.dict -max_len=8192" ;;
    # Past the 12288-octet AUTH line and the 10 000-octet message limit.
    smtp_data | smtp_auth) echo "-dict=dict/smtp.dict -max_len=16384" ;;
    control_request) echo "-dict=dict/json.dict -max_len=8192" ;;
    control_config | mta_config) echo "-dict=dict/toml.dict -max_len=8192" ;;
    *) echo "-max_len=8192" ;;
    esac
}

pin=()
[[ -n ${FUZZ_CORES:-} ]] && pin=(taskset -c "$FUZZ_CORES")
failed=()
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t" "artifacts/$t" "corpus/$t"
    printf '\n--- %s: %ss\n' "$t" "$seconds"
    # shellcheck disable=SC2046 # options() is a list of flags.
    if ! "${pin[@]}" "$bin/$t" $(options "$t") -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "target/corpus/$t" "corpus/$t" \
        >"target/$t.log" 2>&1; then
        failed+=("$t")
        # The assertion that failed, then the reproducer (its name and its bytes).
        grep -m1 -A4 'panicked at' "target/$t.log" || true
        grep -E '^(SUMMARY:|artifact_prefix=|Base64:)' "target/$t.log" || tail -n 20 "target/$t.log"
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+[[:space:]]+DONE)' "target/$t.log" || true
done

if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
    find artifacts -type f >&2
    exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${seconds}s each, no crash"
