#!/usr/bin/env bash
# The long fuzzing run, on demand (CI runs the bounded one: tests/test_fuzz_*.py).
#
#   bench/fuzz_long.sh [SECONDS]        default 600 per fuzzer
#
# 1. Builds the libFuzzer harnesses of tests/fuzz/ (clang, ASan + UBSan) and runs them side
#    by side for SECONDS each; tests/fuzz/corpus/<harness>/ becomes its seed-* files plus a
#    minimal set of inputs (libFuzzer -merge=1, named by sha1) covering everything the run
#    reached — review and commit them.
# 2. If atheris is installed, runs tests/fuzz/atheris_parsers.py (target and blob) for
#    SECONDS each (its new inputs stay in $WORK/new-atheris_*; not merged automatically).
# 3. Runs the hypothesis fuzz tests with SUSPENDOS_FUZZ_SCALE=SECONDS/20 times the CI
#    examples (FUZZ_SCALE=N overrides; FUZZ_SKIP_PYTEST=1 skips this step).
#
# Crashes: the reproducers are left in $WORK/artifacts (WORK defaults to build/fuzz-long);
# run one with `$WORK/bin/<harness> FILE`. Exit status 1 if anything was found.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}
WORK=${WORK:-build/fuzz-long}
PY=${PY:-.venv/bin/python}
mkdir -p "$WORK/bin" "$WORK/artifacts"
found=0

harnesses=$("$PY" tests/fuzz/build.py "$WORK/bin") || { echo "fuzz_long: build failed" >&2; exit 1; }

pids=()
for exe in $harnesses; do
    name=$(basename "$exe")
    new="$WORK/new-$name"
    mkdir -p "$new"
    echo "fuzz_long: libFuzzer $name for ${SECONDS_EACH}s (log $WORK/$name.log)"
    "$exe" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$WORK/artifacts/$name-" \
        "$new" "tests/fuzz/corpus/$name" >"$WORK/$name.log" 2>&1 &
    pids+=("$!:$name")
done

if "$PY" -c "import atheris" 2>/dev/null; then
    for which in target blob; do
        mkdir -p "$WORK/new-atheris_$which"
        seeds=()
        [ -d "tests/fuzz/corpus/atheris_$which" ] && seeds=("tests/fuzz/corpus/atheris_$which")
        echo "fuzz_long: atheris $which for ${SECONDS_EACH}s (log $WORK/atheris_$which.log)"
        PYTHONPATH=. "$PY" tests/fuzz/atheris_parsers.py "$which" -max_total_time="$SECONDS_EACH" \
            -timeout=10 -rss_limit_mb=3000 -artifact_prefix="$WORK/artifacts/atheris_$which-" \
            "$WORK/new-atheris_$which" "${seeds[@]}" >"$WORK/atheris_$which.log" 2>&1 &
        pids+=("$!:atheris_$which")
    done
else
    echo "fuzz_long: atheris not installed (.venv/bin/pip install atheris): skipping it"
fi

for entry in "${pids[@]}"; do
    pid=${entry%%:*}
    name=${entry#*:}
    if wait "$pid"; then
        echo "fuzz_long: $name: $(grep -E '^Done|stat::number_of_executed_units' "$WORK/$name.log" | tail -1)"
    else
        echo "fuzz_long: $name FOUND SOMETHING (log $WORK/$name.log):" >&2
        grep -E "ERROR|check failed|Traceback|Error:|artifact|Test unit written" "$WORK/$name.log" | head -20 >&2
        found=1
    fi
done

# The committed corpus: the seeds plus a minimal set of inputs covering every edge the seeds
# and this run reached (libFuzzer -merge=1 into an empty directory; -use_counters=0 counts
# edges, not hit counts, which keeps it to a few dozen files), named by sha1.
for exe in $harnesses; do
    name=$(basename "$exe")
    dir="tests/fuzz/corpus/$name"
    merged="$WORK/merged-$name"
    rm -rf "$merged" && mkdir -p "$merged"
    before=$(ls "$dir" | wc -l)
    if "$exe" -merge=1 -use_counters=0 -max_len=8192 "$merged" "$dir" "$WORK/new-$name" \
        >"$WORK/$name.merge.log" 2>&1; then
        seeds=$(cd "$dir" && for f in seed-*; do sha1sum <"$f" | cut -d" " -f1; done)
        find "$dir" -type f ! -name 'seed-*' -delete
        for f in "$merged"/*; do
            echo "$seeds" | grep -qx "$(basename "$f")" || cp "$f" "$dir/"
        done
        echo "fuzz_long: corpus $name: $before -> $(ls "$dir" | wc -l) files"
    else
        echo "fuzz_long: merging $name failed (log $WORK/$name.merge.log)" >&2
        found=1
    fi
done
[ -d "$WORK/new-atheris_target" ] && echo "fuzz_long: atheris inputs that reached new code:" \
    "$WORK/new-atheris_target (not merged: review and copy into tests/fuzz/corpus/atheris_target)"

if [ "${FUZZ_SKIP_PYTEST:-0}" != 1 ]; then
    scale=${FUZZ_SCALE:-$(( SECONDS_EACH / 20 > 1 ? SECONDS_EACH / 20 : 1 ))}
    echo "fuzz_long: hypothesis fuzz tests at ${scale}x the CI examples"
    SUSPENDOS_FUZZ_SCALE=$scale SUSPENDOS_FUZZ_SECONDS=$SECONDS_EACH \
        "$PY" -m pytest -q tests/test_fuzz_blob.py tests/test_fuzz_target.py \
        tests/test_fuzz_image.py || found=1
fi

ls "$WORK/artifacts" | grep -q . && { echo "fuzz_long: reproducers in $WORK/artifacts:" >&2; ls -l "$WORK/artifacts" >&2; found=1; }
exit $found
