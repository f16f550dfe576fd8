# Sourced by the benchmark scripts: timing and ratio helpers.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'; }
median() { sort -g "$1" | sed -n 2p; }  # of the 3 lines in file $1
gbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# alternate FILE_A CMD_A FILE_B CMD_B: three timed rounds of two commands,
# order alternated (A first, then B first, then A), each time appended to its
# file; `warm` (when defined) runs before each.
alternate() {
  local fa=$1 ca=$2 fb=$3 cb=$4 i order t0
  : >"$fa"; : >"$fb"
  for i in 1 2 3; do
    order=$([ $((i % 2)) = 1 ] && echo "a b" || echo "b a")
    for m in $order; do
      declare -F warm >/dev/null && warm
      t0=$(now)
      if [ "$m" = a ]; then $ca; since "$t0" >>"$fa"; else $cb; since "$t0" >>"$fb"; fi
    done
  done
}
# bench_header: the machine, date, commit and load, for the record.
bench_header() {
  echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
  echo "# date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$REPO" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
# bench_keys: root.key, pub.key (delegated for acme/) and trust.root in the
# current directory ($CAIRN set).
bench_keys() {
  $CAIRN keygen --out root.key >/dev/null
  $CAIRN keygen --out pub.key >/dev/null
  $CAIRN trust init --key root.key --out trust.root >/dev/null
  $CAIRN trust delegate --trust trust.root --key root.key --namespace acme --publisher pub.key.pub >/dev/null
}
# bench_node: starts a node on data dir ./node ($NODE set); sets NODE_PID and
# GRPC once it listens.
bench_node() {
  $NODE serve --data node --listen 127.0.0.1:0 --http 127.0.0.1:0 --trust trust.root >node.out 2>node.log &
  NODE_PID=$!
  for _ in $(seq 200); do grep -q listening node.out 2>/dev/null && break; sleep 0.05; done
  GRPC=$(sed -n 's/^cairn-node listening on //p' node.out)
}
