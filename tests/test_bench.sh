#!/bin/sh
# test_bench: the benchmark programs run to the end in a tiny mode and
# write what they promise (performance itself is measured by `make bench`,
# never judged by a timed test).
#
#   bench_log --quick                    runs and prints its goal table
#   bench_node --quick, parts 1-6 tiny   runs; every figure is in its results
#                                        file, with a measured value
#   bench_nats (when built)              the same for the JetStream anchor
#   bench_table.sh                       turns the results into a table, a
#                                        CSV and a JSON file, and flags a
#                                        figure that was not measured
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-test-bench.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
srcdir=${SHOAL_SRCDIR:-${srcdir:-.}}
mkdir "$tmp/run"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; fi; }

# SHOAL_HAVE_NATS (from make check) says whether configure found libnats;
# a bench_nats left over from an older configuration does not count.
nats=0
[ -x ./bench/bench_nats ] && [ "${SHOAL_HAVE_NATS:-yes}" = yes ] && nats=1
echo "1..$((13 + nats * 4))"

out=$(./bench/bench_log --quick 2>&1)
check "bench_log --quick runs to the end" "[ $? -eq 0 ]"
check "bench_log prints its goal table" 'echo "$out" | grep -q "goals met"'

# Tiny counts: a smoke test of each part, not a measurement.
export BENCH_COUNT=300 BENCH_CATCHUP=2000 BENCH_RECOVERY_MIB=2
TMPDIR="$tmp/run" ./bench/bench_node --quick --results "$tmp/node.tsv" > "$tmp/node.out" 2>&1
status=$?
check "bench_node --quick runs to the end" "[ $status -eq 0 ]"
[ $status -eq 0 ] || tail -5 "$tmp/node.out" | sed 's/^/# /'
check "bench_node measured fan-out for shoal and raw zmq" \
    'grep -q "^fanout_4_1024B	shoal	[0-9]" "$tmp/node.tsv" && grep -q "^fanout_4_1024B	zmq	[0-9]" "$tmp/node.tsv"'
check "bench_node measured latency percentiles at 1k, 10k, 100k events/s" \
    '[ "$(grep -c "^latency_[0-9]*k_p[0-9]*	shoal	[0-9]" "$tmp/node.tsv")" -eq 9 ]'
check "bench_node measured catch-up, recovery and discovery" \
    'grep -q "^catchup	shoal	[0-9]" "$tmp/node.tsv" && grep -q "^recovery	shoal	[0-9]" "$tmp/node.tsv" && grep -q "^discovery	shoal	[0-9]" "$tmp/node.tsv"'
check "bench_node measured shoald's RSS and the sizes" \
    'grep -q "^rss_idle	shoal	[0-9]" "$tmp/node.tsv" && grep -q "^size_library	shoal	[0-9]" "$tmp/node.tsv"'
check "bench_node left no process and no file behind" \
    '! pgrep -f "$tmp/run" >/dev/null && [ -z "$(ls -A "$tmp/run")" ]'
check "bench_node refuses an unknown flag (exit 2)" \
    './bench/bench_node --no-such-flag >/dev/null 2>&1; [ $? -eq 2 ]'

if [ $nats -eq 1 ]; then
    TMPDIR="$tmp/run" ./bench/bench_nats --quick --only fanout,catchup,footprint --results "$tmp/node.tsv" > "$tmp/nats.out" 2>&1
    status=$?
    check "bench_nats --quick runs to the end" "[ $status -eq 0 ]"
    [ $status -eq 0 ] || tail -5 "$tmp/nats.out" | sed 's/^/# /'
    check "bench_nats measured JetStream fan-out and catch-up" \
        'grep -q "^fanout_4_1024B	nats	[0-9]" "$tmp/node.tsv" && grep -q "^catchup	nats	[0-9]" "$tmp/node.tsv"'
    check "bench_nats measured nats-server's RSS, and left nothing behind" \
        'grep -q "^rss_idle	nats	[0-9]" "$tmp/node.tsv" && ! pgrep -f "$tmp/run" >/dev/null && [ -z "$(ls -A "$tmp/run")" ]'
    check "bench_nats refuses an unknown flag (exit 2)" \
        './bench/bench_nats --no-such-flag >/dev/null 2>&1; [ $? -eq 2 ]'
fi

sh "$srcdir/bench/bench_table.sh" "$tmp/node.tsv" "$tmp" > "$tmp/table.out" 2>&1
check "bench_table.sh makes the table" 'grep -q "^fan-out 4 subs, 1 KiB" "$tmp/table.out" && grep -q "goals met" "$tmp/table.out"'
check "bench_table.sh writes the CSV, one line per figure" \
    '[ "$(grep -c "^fanout_4_1024B," "$tmp/results.csv")" -eq 1 ] && head -1 "$tmp/results.csv" | grep -q "^figure,unit,shoal,zmq,jetstream"'
check "bench_table.sh writes JSON with the figures" \
    'grep -q "\"figure\": \"catchup\"" "$tmp/results.json" && tail -1 "$tmp/results.json" | grep -q "^]"'
# A figure that could not be measured is reported so, and its goal is not met.
printf 'rss_idle\tshoal\t-1.000\tMiB\n' > "$tmp/missing.tsv"
sh "$srcdir/bench/bench_table.sh" "$tmp/missing.tsv" "$tmp" > "$tmp/missing.out" 2>&1
check "bench_table.sh marks a figure that was not measured" \
    'grep "^daemon RSS idle" "$tmp/missing.out" | grep -q "n/m" && grep -q "0 of 1 goals met" "$tmp/missing.out"'
