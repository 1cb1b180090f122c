#!/usr/bin/env bash
# Rate accuracy across a real queue: a veth pair into a network namespace
# this script creates (sonde-a <-> sonde-b, 10.222.0.0/24, never routed
# anywhere else), with the sending side shaped by tc tbf to 100 Mbit/s.
# Runs sonde perf and iperf3 3.12 side by side; needs root. Cleans up on exit.
# Usage: bench/netns.sh [target/release/sonde]
set -euo pipefail
S=${1:-target/release/sonde}
A=sonde-a; B=sonde-b
# shellcheck source=bench/netns-lib.sh
. "$(dirname "$0")/netns-lib.sh"

run() { # tool, flags...
  local tool=$1; shift
  if [ "$tool" = sonde ]; then
    ip netns exec $B "$S" perf -s -1 -B 10.222.0.2 -p 25300 >/dev/null 2>&1 &
  else
    ip netns exec $B iperf3 -s -1 -B 10.222.0.2 -p 25300 >/dev/null 2>&1 &
  fi
  local srv=$!
  for _ in $(seq 100); do ip netns exec $B ss -Hltn 'sport = :25300' | grep -q . && break; sleep 0.02; done
  local cmd=("$S" perf); [ "$tool" = iperf3 ] && cmd=(iperf3)
  ip netns exec $A "${cmd[@]}" -c 10.222.0.2 -p 25300 -t 5 -J "$@" > /tmp/sonde-netns.json
  wait $srv || true
  python3 - "$tool" "$*" <<'PY'
import json, sys
d = json.load(open("/tmp/sonde-netns.json"))
e = d["end"]
rates = [iv["sum"]["bits_per_second"] / 1e6 for iv in d["intervals"] if iv["sum"]["seconds"] > 0.9]
rcv = e["sum_received"]["bits_per_second"] / 1e6
loss = e.get("sum", {}).get("lost_percent", 0.0)
print(f"{sys.argv[1]:6s} {sys.argv[2]:28s} receiver {rcv:7.2f} Mbit/s  sender intervals {min(rates):6.2f}-{max(rates):6.2f} Mbit/s  loss {loss:5.2f}%")
PY
}
for round in 1 2; do
  for tool in sonde iperf3; do
    run $tool
    run $tool -u -b 50M -l 1400
    run $tool -u -b 90M -l 1400
    run $tool -u -b 200M -l 1400
  done
done
