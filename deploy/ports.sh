# Sourced by scripts that start nodes which must know each other's addresses
# before they start (port 0 cannot be used there).
#
# free_port [COUNT]: prints the first of COUNT consecutive loopback ports no
# socket uses, chosen below the kernel's ephemeral range: a port inside that
# range can be taken between the check and the bind by any outgoing
# connection on the machine (a node's own connection to its object store,
# another test's client), and the node that then cannot bind it exits.
free_port() {
  local count=${1:-1} lo hi p i busy
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
  hi=$((lo - count))
  lo=10000
  [ "$hi" -gt "$lo" ] || { lo=$((hi + count + 1)); hi=$((65535 - count)); }
  busy=$(ss -Htan | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u)
  for p in $(shuf -i "$lo-$hi" -n 100); do
    for ((i = 0; i < count; i++)); do grep -qx "$((p + i))" <<<"$busy" && continue 2; done
    echo "$p"
    return 0
  done
  echo "free_port: no $count free consecutive ports in $lo-$hi" >&2
  return 1
}
