#!/bin/sh
# test_sim: the failure harness on the real nodes and on planted bugs.
#
# SIM_SEEDS seeds (default 10) of shoal-sim with every fault the mode
# allows must report no violation; then two planted bugs (SHOAL_TEST_BUG,
# test-only switches in src/shoal_engine.c) must be caught with the
# matching violation:
#   ack-before-fsync + SIGKILL  -> acknowledged events lost
#   skip-repair + packet loss   -> events never delivered (liveness)
# Each run must leave no namespace, mount, process or work directory
# behind. As root the runs use network namespaces; otherwise loopback.
builddir=${SHOAL_BUILDDIR:-.}
sim="$builddir/nodes/shoal-sim"
seeds=${SIM_SEEDS:-10}
first=${SIM_FIRST_SEED:-1}
duration=${SIM_DURATION:-6}
echo "1..$((2 * seeds + 6))"
n=0
ok () { n=$((n + 1)); echo "ok $n - $*"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $*"; }

# Leftovers of one run, named by its prefix (shsimPID).
leftovers () {
    prefix=$1
    left=""
    if command -v ip >/dev/null 2>&1 && ip netns list 2>/dev/null | grep -q "^$prefix"; then left="$left namespaces"; fi
    if grep -q "/$prefix/" /proc/mounts 2>/dev/null; then left="$left mounts"; fi
    if [ -d "${TMPDIR:-/tmp}/$prefix" ]; then left="$left workdir"; fi
    if ps -eo args 2>/dev/null | grep -v grep | grep -q "/$prefix/"; then left="$left processes"; fi
    echo "$left"
}

run () {
    out=$("$sim" "$@" 2>&1)
    status=$?
    prefix=$(echo "$out" | sed -n 's/^shoal-sim: run \(shsim[0-9]*\),.*/\1/p')
}

seed=$first
while [ $seed -lt $((first + seeds)) ]; do
    start=$(date +%s)
    run --seed $seed --duration $duration --bound 30
    took=$(( $(date +%s) - start ))
    if [ $status -eq 0 ]; then
        ok "seed $seed: no violation ($(echo "$out" | sed -n 's/^  faults *//p'); ${took}s)"
    else
        not_ok "seed $seed: shoal-sim exited $status"
        echo "$out" | sed -n '/report/,$p' | sed 's/^/# /'
    fi
    left=$(leftovers "$prefix")
    if [ -n "$prefix" ] && [ -z "$left" ]; then ok "seed $seed: nothing left behind"; else not_ok "seed $seed: left behind:$left (run '$prefix')"; fi
    seed=$((seed + 1))
done

run --seed 101 --duration 5 --bound 15 --faults kill --bug ack-before-fsync
if [ $status -eq 1 ]; then ok "ack-before-fsync: the harness reports a violation"; else not_ok "ack-before-fsync: exit $status, expected 1"; fi
if echo "$out" | grep -q "FAIL no acknowledged event lost"; then ok "ack-before-fsync + SIGKILL: acknowledged events lost"; else not_ok "ack-before-fsync: no lost-event violation"; echo "$out" | sed -n '/report/,$p' | sed 's/^/# /'; fi
left=$(leftovers "$prefix")
if [ -n "$prefix" ] && [ -z "$left" ]; then ok "ack-before-fsync run: nothing left behind"; else not_ok "ack-before-fsync run left behind:$left"; fi

# Loss needs root (nftables); in loopback mode pauses stand in for it.
if [ "$(id -u)" = 0 ] && command -v nft >/dev/null 2>&1; then faults=loss; else faults=pause; fi
run --seed 102 --duration 5 --bound 10 --faults $faults --bug skip-repair
if [ $status -eq 1 ]; then ok "skip-repair: the harness reports a violation"; else not_ok "skip-repair: exit $status, expected 1"; fi
if echo "$out" | grep -q "FAIL liveness within the bound"; then ok "skip-repair + $faults: liveness violation (events never delivered)"; else not_ok "skip-repair: no liveness violation"; echo "$out" | sed -n '/report/,$p' | sed 's/^/# /'; fi
left=$(leftovers "$prefix")
if [ -n "$prefix" ] && [ -z "$left" ]; then ok "skip-repair run: nothing left behind"; else not_ok "skip-repair run left behind:$left"; fi
