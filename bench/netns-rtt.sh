#!/usr/bin/env bash
# Latency under load across a real queue: the veth pair of bench/netns.sh
# (two network namespaces this script creates, 10.222.0.0/24, routed nowhere
# else), the client side shaped with tc tbf (100 Mbit/s, 50 ms of queue).
# `sonde rtt --under-load` pings `sonde serve echo` idle, then beside a bulk
# TCP stream to `sonde perf -s` (or iperf3 -s with --iperf3); the ratio shows
# how much the queue inflates delay. Needs root; cleans up on exit.
# Usage: bench/netns-rtt.sh [target/release/sonde] [--iperf3]
set -euo pipefail
S=${1:-target/release/sonde}
PEER=${2:-}
A=sonde-ra; B=sonde-rb
# shellcheck source=bench/netns-lib.sh
. "$(dirname "$0")/netns-lib.sh"
ip netns exec $B "$S" serve echo --bind 10.222.0.2 --port 7007 --quiet &
ECHO=$!
if [ "$PEER" = --iperf3 ]; then
  ip netns exec $B iperf3 -s -B 10.222.0.2 -p 5201 >/dev/null 2>&1 &
else
  ip netns exec $B "$S" perf -s -B 10.222.0.2 -p 5201 >/dev/null 2>&1 &
fi
PERF=$!
for _ in $(seq 200); do
  ip netns exec $B ss -Hltn 'sport = :5201' | grep -q . && ip netns exec $B ss -Hltn 'sport = :7007' | grep -q . && break
  sleep 0.02
done
for round in 1 2 3; do
  echo "== round $round"
  ip netns exec $A "$S" rtt 10.222.0.2 --under-load --load-port 5201 -t 3
done
kill $ECHO $PERF 2>/dev/null || true
