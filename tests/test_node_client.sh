#!/bin/sh
# test_node_client: the Node.js example (clients/node/shoal_client.js)
# against a live shoald on loopback: publish, status, replay, subscribe
# with a live event, and an Error reply. It needs node and the npm packages
# zeromq and protobufjs in clients/node/node_modules (cd clients/node &&
# npm install); without them it SKIPs. shoald is killed by its pid and its
# directory removed at the end.
srcdir=${SHOAL_SRCDIR:-.}
builddir=${SHOAL_BUILDDIR:-.}
client="$srcdir/clients/node/shoal_client.js"
if ! command -v node >/dev/null 2>&1; then
    echo "1..0 # SKIP node is not installed"
    exit 0
fi
if [ ! -d "$srcdir/clients/node/node_modules/zeromq" ] || [ ! -d "$srcdir/clients/node/node_modules/protobufjs" ]; then
    echo "1..0 # SKIP clients/node/node_modules is missing (cd clients/node && npm install)"
    exit 0
fi
export SHOAL_PROTO="$srcdir/proto/shoal.proto"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-node.XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

echo "1..8"
"$builddir/nodes/shoald" --data "$tmp/a" --name alpha --mesh "node-$$" --interface none \
    --heartbeat-ms 200 > "$tmp/out" 2> "$tmp/err" &
pid=$!
i=0
while [ $i -lt 100 ] && ! grep -q '^shoald: node ' "$tmp/out" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
router=$(awk '/^shoald: node /{print $8}' "$tmp/out")
origin=$(awk '/^shoald: node /{print $4}' "$tmp/out")
if [ -z "$router" ]; then
    echo "Bail out! shoald did not start: $(cat "$tmp/err")"
    exit 1
fi
run() { timeout 30 node "$client" --node "$router" "$@"; }
check() { # check N NAME: ok when the last command's status was 0
    if [ "$1" -eq 0 ]; then echo "ok $2 - $3"; else echo "not ok $2 - $3"; fi
}

out=$(run pub orders Placed '{"total":1}')
[ "$out" = "$origin/orders/1" ]; check $? 1 "pub prints origin/stream/seq 1 ($out)"
out=$(run pub orders Placed second)
[ "$out" = "$origin/orders/2" ]; check $? 2 "a second pub gets seq 2"
out=$(run status)
echo "$out" | grep -q "^node alpha $origin" && echo "$out" | grep -q "log $origin/orders first 1 head 2"
check $? 3 "status shows the node and the log's head"
out=$(run replay "$origin" orders 2 2)
[ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q '"seq":2,' && echo "$out" | grep -q '"payload":"second"'
check $? 4 "replay 2-2 gives seq 2 with its payload"
out=$(run replay "$origin" nosuch 2>&1)
status=$?
[ $status -eq 1 ] && echo "$out" | grep -q "error 2"
check $? 5 "replay of an unknown stream exits 1 with Error 2"
(sleep 1; "$builddir/nodes/shoal" --node "$router" pub orders Live --json-payload 3 > /dev/null) &
helper=$!
out=$(run sub orders --count 3 --mesh "node-$$")
wait $helper
seqs=$(echo "$out" | sed -n 's/.*"seq":\([0-9]*\),.*/\1/p' | tr '\n' ' ')
[ "$seqs" = "1 2 3 " ]; check $? 6 "sub gets the history by replay, then a live event, in order ($seqs)"
echo "$out" | tail -1 | grep -q '"type":"Live"'; check $? 7 "the live event is the one the C CLI published"
kill -0 "$pid" 2>/dev/null; check $? 8 "shoald still runs"
