# Shared by bench/netns.sh and bench/netns-rtt.sh (source it after setting
# A and B to two namespace names): creates the namespaces, a veth pair
# 10.222.0.1 (A) <-> 10.222.0.2 (B) routed nowhere else, shapes A's side
# with tc tbf to 100 Mbit/s, and removes everything on exit.
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add "$A"; ip netns add "$B"
ip link add va netns "$A" type veth peer name vb netns "$B"
ip -n "$A" addr add 10.222.0.1/24 dev va; ip -n "$B" addr add 10.222.0.2/24 dev vb
ip -n "$A" link set va up; ip -n "$B" link set vb up
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip netns exec "$A" tc qdisc add dev va root tbf rate 100mbit burst 64kb latency 50ms
