#!/bin/sh
# bench_table.sh RESULTS.tsv OUTDIR: the figures of bench_node and bench_nats
# (lines "figure<TAB>system<TAB>value<TAB>unit", system shoal, zmq or nats)
# as one table on stdout, and as OUTDIR/results.csv, OUTDIR/results.json,
# OUTDIR/results.md (Markdown, for the README) and,
# when gnuplot is installed, OUTDIR/results.png.
#
# Each row is one figure with its anchors from the same run; the ratio is
# shoal's figure over the anchor's; a goal, when the row has one, says what
# the ratio (or the figure itself) must be, and "met?" whether it is. A value
# of -1 means "not measured" and is printed as such; a goal whose figure is
# missing is not met.
set -eu
results=${1:?usage: bench_table.sh RESULTS.tsv OUTDIR}
out=${2:-.}
[ -f "$results" ] || { echo "bench_table: $results not found" >&2; exit 1; }

awk -F '\t' -v csv="$out/results.csv" -v json="$out/results.json" -v md="$out/results.md" -v plot="$out/results.plot" '
BEGIN {
    # figure, label, goal kind (zmq_nats: ratio to zmq and to nats; nats_min:
    # ratio to nats at least; nats_max: ratio to nats at most; abs_max: the
    # figure at most), goal values.
    n = 0
    row("fanout_1_100B",   "fan-out 1 sub, 100 B",   "zmq_nats", 0.5, 5)
    row("fanout_4_100B",   "fan-out 4 subs, 100 B",  "zmq_nats", 0.5, 5)
    row("fanout_16_100B",  "fan-out 16 subs, 100 B", "zmq_nats", 0.5, 5)
    row("fanout_1_1024B",  "fan-out 1 sub, 1 KiB",   "zmq_nats", 0.5, 5)
    row("fanout_4_1024B",  "fan-out 4 subs, 1 KiB",  "zmq_nats", 0.5, 5)
    row("fanout_16_1024B", "fan-out 16 subs, 1 KiB", "zmq_nats", 0.5, 5)
    row("latency_1k_p50",    "latency 1k/s p50",      "", 0, 0)
    row("latency_1k_p99",    "latency 1k/s p99",      "", 0, 0)
    row("latency_1k_p999",   "latency 1k/s p99.9",    "", 0, 0)
    row("latency_10k_p50",   "latency 10k/s p50",     "", 0, 0)
    row("latency_10k_p99",   "latency 10k/s p99",     "nats_max", 0.5, 0)
    row("latency_10k_p999",  "latency 10k/s p99.9",   "", 0, 0)
    row("latency_10k_p50_nofsync",  "10k/s p50, fsync never",   "", 0, 0)
    row("latency_10k_p99_nofsync",  "10k/s p99, fsync never",   "nats_max", 0.5, 0)
    row("latency_10k_p999_nofsync", "10k/s p99.9, fsync never", "", 0, 0)
    row("latency_100k_p50",  "latency 100k/s p50",    "", 0, 0)
    row("latency_100k_p99",  "latency 100k/s p99",    "", 0, 0)
    row("latency_100k_p999", "latency 100k/s p99.9",  "", 0, 0)
    row("catchup",      "catch-up replay",          "nats_min", 2, 0)
    row("recovery",     "restart after SIGKILL",    "", 0, 0)
    row("discovery",    "discovery, 32 nodes",    "abs_max", 2000, 0)
    row("rss_idle",     "daemon RSS idle",          "abs_max", 8, 0)
    row("rss_10k",      "daemon RSS at 10k ev/s",   "", 0, 0)
    row("size_daemon",  "daemon binary (stripped)", "", 0, 0)
    row("size_cli",     "CLI binary (stripped)",    "", 0, 0)
    row("size_library", "library (stripped)",       "", 0, 0)
}
function row(key, label, kind, a, b) {
    order[++n] = key; labels[key] = label; kinds[key] = kind; goal_a[key] = a; goal_b[key] = b
}
{ value[$1, $2] = $3 + 0; have[$1, $2] = 1; unit[$1] = $4 }
# A goal the anchors themselves rule out: 5 x JetStream above what raw
# libzmq PUB/SUB carried in the same run, which shoal runs on.
function beyond_zmq(key) {
    return kinds[key] == "zmq_nats" && ok(key, "zmq") && ok(key, "nats") \
        && value[key, "nats"] * goal_b[key] > value[key, "zmq"]
}
function met_text(key,   m) {
    m = met(key)
    return m == "no" && beyond_zmq(key) ? "no (" goal_b[key] " x JS > raw zmq)" : m
}
function show(key, sys) {
    if (!have[key, sys]) return "-"
    if (value[key, sys] < 0) return "n/m"
    v = value[key, sys]
    return v >= 100 ? sprintf("%.0f", v) : sprintf("%.2f", v)
}
function ok(key, sys) { return have[key, sys] && value[key, sys] > 0 }
function ratio(key, sys) { return ok(key, "shoal") && ok(key, sys) ? value[key, "shoal"] / value[key, sys] : -1 }
function goal_text(key,   k) {
    k = kinds[key]
    if (k == "zmq_nats") return sprintf(">= %.1f x zmq, >= %g x JS", goal_a[key], goal_b[key])
    if (k == "nats_min") return sprintf(">= %g x JS", goal_a[key])
    if (k == "nats_max") return sprintf("<= %g x JS", goal_a[key])
    if (k == "abs_max")  return sprintf("<= %g %s", goal_a[key], unit[key])
    return ""
}
function met(key,   k, rz, rn) {
    k = kinds[key]; rz = ratio(key, "zmq"); rn = ratio(key, "nats")
    if (k == "") return ""
    if (k == "zmq_nats") {
        if (rz < 0 || rn < 0) return (rz >= 0 && rz < goal_a[key]) || (rn >= 0 && rn < goal_b[key]) ? "no" : "n/m"
        return rz >= goal_a[key] && rn >= goal_b[key] ? "yes" : "no"
    }
    if (k == "nats_min") return rn < 0 ? "n/m" : (rn >= goal_a[key] ? "yes" : "no")
    if (k == "nats_max") return rn < 0 ? "n/m" : (rn <= goal_a[key] ? "yes" : "no")
    if (k == "abs_max") return ok(key, "shoal") ? (value[key, "shoal"] <= goal_a[key] ? "yes" : "no") : "n/m"
}
function ratio_text(key,   rz, rn, t) {
    rz = ratio(key, "zmq"); rn = ratio(key, "nats"); t = ""
    if (rz >= 0) t = sprintf("%.3g zmq", rz)
    if (rn >= 0) t = t (t == "" ? "" : ", ") sprintf("%.3g JS", rn)
    return t
}
function num(key, sys) { return have[key, sys] ? sprintf("%.3f", value[key, sys]) : "" }
function jnum(key, sys) { return have[key, sys] && value[key, sys] >= 0 ? sprintf("%.3f", value[key, sys]) : "null" }
function pv(key, sys) { return have[key, sys] ? value[key, sys] : -1 }
function jratio(r) { return r >= 0 ? sprintf("%.4f", r) : "null" }
END {
    # The fsync-never rows stand beside JetStream as it runs here: its file
    # store does not fsync per message either (sync every 2 minutes).
    split("p50 p99 p999", q, " ")
    for (i = 1; i <= 3; i++)
        if (have["latency_10k_" q[i], "nats"] && have["latency_10k_" q[i] "_nofsync", "shoal"]) {
            value["latency_10k_" q[i] "_nofsync", "nats"] = value["latency_10k_" q[i], "nats"]
            have["latency_10k_" q[i] "_nofsync", "nats"] = 1
        }
    printf "\n%-26s %-6s %12s %12s %12s  %-20s %-26s %s\n", "figure", "unit", "shoal", "raw zmq", "JetStream", "ratio", "goal", "met?"
    printf "%-26s %-6s %12s %12s %12s  %-20s %-26s %s\n", "------", "----", "-----", "-------", "---------", "-----", "----", "----"
    print "figure,unit,shoal,zmq,jetstream,ratio_zmq,ratio_jetstream,goal,met" > csv
    print "[" > json
    print "| figure | unit | shoal | raw zmq | JetStream | ratio | goal | met? |" > md
    print "| --- | --- | ---: | ---: | ---: | --- | --- | --- |" > md
    first = 1; goals = 0; goals_met = 0
    for (i = 1; i <= n; i++) {
        key = order[i]
        if (!have[key, "shoal"] && !have[key, "zmq"] && !have[key, "nats"]) continue
        m = met(key)
        if (m != "") { goals++; if (m == "yes") goals_met++ }
        printf "%-26s %-6s %12s %12s %12s  %-20s %-26s %s\n", labels[key], unit[key], show(key, "shoal"), show(key, "zmq"), show(key, "nats"), ratio_text(key), goal_text(key), met_text(key)
        rz = ratio(key, "zmq"); rn = ratio(key, "nats")
        cz = rz >= 0 ? sprintf("%.4f", rz) : ""
        cn = rn >= 0 ? sprintf("%.4f", rn) : ""
        jm = (m == "" || m == "n/m") ? "null" : (m == "yes" ? "true" : "false")
        sep = first ? "" : ",\n"
        printf "%s,%s,%s,%s,%s,%s,%s,\"%s\",%s\n", key, unit[key], num(key, "shoal"), num(key, "zmq"), num(key, "nats"), cz, cn, goal_text(key), m > csv
        printf "%s  {\"figure\": \"%s\", \"label\": \"%s\", \"unit\": \"%s\", \"shoal\": %s, \"zmq\": %s, \"jetstream\": %s, \"ratio_zmq\": %s, \"ratio_jetstream\": %s, \"goal\": \"%s\", \"met\": %s}", sep, key, labels[key], unit[key], jnum(key, "shoal"), jnum(key, "zmq"), jnum(key, "nats"), jratio(rz), jratio(rn), goal_text(key), jm > json
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", labels[key], unit[key], show(key, "shoal"), show(key, "zmq"), show(key, "nats"), ratio_text(key), goal_text(key), met_text(key) > md
        first = 0
        if (key ~ /^fanout_/ || key ~ /_p99$/)
            printf "\"%s\" %s %s %s\n", labels[key], pv(key, "shoal"), pv(key, "zmq"), pv(key, "nats") > plot
    }
    print "\n]" > json
    printf "\n%d of %d goals met (n/m = not measured; ratios are shoal / anchor from the same run)\n", goals_met, goals
}' "$results"

echo "bench: table written to $out/results.csv, $out/results.json and $out/results.md"
if command -v gnuplot >/dev/null 2>&1 && [ -s "$out/results.plot" ]; then
    grep '^"fan-out' "$out/results.plot" > "$out/results.fanout" || true
    grep '^"latency' "$out/results.plot" > "$out/results.latency" || true
    gnuplot <<EOF && echo "bench: plot written to $out/results.png"
set terminal pngcairo size 1200,520 noenhanced font ",10"
set output "$out/results.png"
set multiplot layout 1,2 title "shoal beside raw libzmq and NATS JetStream (same run, same machine)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set datafile missing "-1"
set key top right
set xtics rotate by -30
set logscale y
set grid ytics
set title "fan-out: events/s delivered (higher is better)"
plot "$out/results.fanout" using 2:xtic(1) title "shoal", '' using 3 title "raw zmq", '' using 4 title "JetStream"
set key top left
set title "latency p99, microseconds (lower is better)"
plot "$out/results.latency" using 2:xtic(1) title "shoal", '' using 3 title "raw zmq", '' using 4 title "JetStream"
unset multiplot
EOF
    rm -f "$out/results.fanout" "$out/results.latency"
else
    echo "bench: no plot (gnuplot not installed: apt-get install gnuplot-nox, or ./quickstart bench)"
fi
rm -f "$out/results.plot"
