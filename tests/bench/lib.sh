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
