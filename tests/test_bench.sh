#!/bin/sh
# test_bench: the benchmark programs run to the end in their quick mode and
# print their goal tables (performance itself is measured by `make bench`,
# never judged by a timed test).
echo "1..4"
n=0
for bench in bench_log bench_node; do
    out=$(./bench/$bench --quick 2>&1)
    status=$?
    n=$((n + 1))
    if [ $status -eq 0 ]; then echo "ok $n - $bench --quick runs to the end"; else echo "not ok $n - $bench --quick exited $status"; echo "$out" | tail -5 | sed 's/^/# /'; fi
    n=$((n + 1))
    if echo "$out" | grep -q "goals met"; then echo "ok $n - $bench prints its goal table"; else echo "not ok $n - $bench printed no goal table"; fi
done
