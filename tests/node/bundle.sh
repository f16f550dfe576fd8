#!/bin/bash
# Offline bundles end to end, as docs/operators.md's runbook "Move a model by
# disk" does it: node a (connected) and node b (no link to a) share a trust
# root. b writes its inventory; a exports what b lacks (split into volumes);
# b imports them (offline, then online into the running node, then over
# gRPC with `cairn import`); a pull from b is verified. A volume missing or
# damaged is refused with nothing visible; an interrupted import resumes;
# importing twice changes nothing; import over the network from a
# non-loopback address is refused by default.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"

node_start a
make_model "$T/m1" 1
publish "$a_GRPC" "$T/m1" acme/m 1.0
cp -r "$T/m1" "$T/m2"
head -c 2000000 </dev/urandom | dd of="$T/m2/model.safetensors" bs=1 seek=1000000 conv=notrunc status=none
echo "v2" >>"$T/m2/config.json"
publish "$a_GRPC" "$T/m2" acme/m 2.0
export CAIRN_TRUST=$T/trust.root

# 1. b, never started, is seeded with 1.0 from a full bundle (offline import).
CAIRN_NODE=$a_GRPC "$CAIRN" export acme/m@1.0 --to "$T/v1.cairn" >"$T/exp1.out" 2>&1 ||
  fail "export 1.0: $(cat "$T/exp1.out")"
mkdir -p "$T/b"
node_start b
node_stop b  # b's data directory exists, the node is stopped
"$NODE" import --data "$T/b" --trust "$T/trust.root" "$T/v1.cairn" >"$T/imp1.out" 2>&1 ||
  fail "offline import: $(cat "$T/imp1.out")"
grep -q "imported acme/m@1.0" "$T/imp1.out" || fail "offline import said: $(cat "$T/imp1.out")"

# 2. b's inventory goes to a; a exports 2.0 leaving out what b holds, in volumes.
"$NODE" inventory --data "$T/b" --trust "$T/trust.root" --to "$T/b.inv" >/dev/null 2>&1 || fail "inventory"
grep -q "^release acme/m sha256:" "$T/b.inv" || fail "inventory: $(cat "$T/b.inv")"
CAIRN_NODE=$a_GRPC "$CAIRN" export acme/m:latest --have "$T/b.inv" --split 1M --to "$T/v2.cairn" \
  >"$T/exp2.out" 2>&1 || fail "export 2.0: $(cat "$T/exp2.out")"
grep -q "left out: the receiver holds them" "$T/exp2.out" || fail "nothing left out: $(cat "$T/exp2.out")"
nvol=$(ls "$T"/v2.cairn.0* | wc -l)
full=$(stat -c %s "$T/v1.cairn")
delta=$(cat "$T"/v2.cairn.0* | wc -c)
[ "$delta" -lt $((full / 2)) ] || fail "the delta bundle ($delta bytes) is not smaller than half of a full one ($full)"
[ "$nvol" -ge 2 ] || fail "--split 1M wrote $nvol volume(s)"

# 3. Damage: a flipped byte in the first volume (every chunk is hashed, held
# or not), a volume missing: refused, nothing visible.
node_start b
last=$(ls "$T"/v2.cairn.0* | tail -1)
mapfile -t vols < <(ls "$T"/v2.cairn.0* | head -n -1)
for i in $(seq 1 "$nvol"); do cp "$(printf '%s/v2.cairn.%03d' "$T" "$i")" "$(printf '%s/bad.%03d' "$T" "$i")"; done
# The byte's complement (writing a fixed 0xff left the bundle intact when the
# byte already was 0xff: 1 run in 256 of random weights).
at=$(( $(stat -c %s "$T/bad.001") - 100 ))
byte=$(od -An -tu1 -j "$at" -N1 "$T/bad.001" | tr -d ' ')
printf "\\$(printf '%03o' $((255 - byte)))" | dd of="$T/bad.001" bs=1 seek="$at" conv=notrunc status=none
cmp -s "$T/bad.001" "$T/v2.cairn.001" && fail "the damage changed nothing"
if "$NODE" import --data "$T/b" "$T/bad" >"$T/bad.out" 2>&1; then fail "a damaged bundle was imported"; fi
grep -q "refused\|does not match\|out of order" "$T/bad.out" || fail "damaged: $(cat "$T/bad.out")"
if "$NODE" import --data "$T/b" "${vols[@]}" >"$T/cut.out" 2>&1; then fail "a bundle without its last volume was imported"; fi
grep -q "cut short" "$T/cut.out" || fail "missing volume: $(cat "$T/cut.out")"
CAIRN_NODE=$b_GRPC "$CAIRN" ls acme/m --json >"$T/ls.json" 2>&1 || fail "ls"
grep -q '"2.0"' "$T/ls.json" && fail "2.0 is visible after refused imports"

# 4. The running node imports the good volumes (asked by signal) and serves them.
"$NODE" import --data "$T/b" "$T/v2.cairn" >"$T/imp2.out" 2>&1 || fail "online import: $(cat "$T/imp2.out")"
grep -q "imported acme/m@2.0" "$T/imp2.out" || fail "online import said: $(cat "$T/imp2.out")"
CAIRN_NODE=$b_GRPC "$CAIRN" pull acme/m:latest --out "$T/got2" >/dev/null 2>"$T/pull.err" ||
  fail "pull 2.0 from b: $(cat "$T/pull.err")"
diff -r -x .cairn "$T/m2" "$T/got2" >&2 || fail "2.0 from b differs"
# Twice: a no-op.
"$NODE" import --data "$T/b" "$T/v2.cairn" >"$T/imp3.out" 2>&1 || fail "second import: $(cat "$T/imp3.out")"
grep -q "held already acme/m@2.0" "$T/imp3.out" || fail "second import: $(cat "$T/imp3.out")"
grep -q "^0 chunks stored" "$T/imp3.out" || fail "second import stored chunks: $(cat "$T/imp3.out")"

# 5. cairn import over gRPC into a third node c: a copy cut at 60 % (the
# disk pulled out) is refused, keeping what it stored; the whole bundle then
# resumes from there.
node_start c
head -c $((full * 6 / 10)) "$T/v1.cairn" >"$T/cut.cairn"
if CAIRN_NODE=$c_GRPC "$CAIRN" import "$T/cut.cairn" >"$T/net1.out" 2>&1; then fail "a cut bundle was imported"; fi
grep -q "cut short" "$T/net1.out" || fail "cut bundle: $(cat "$T/net1.out")"
CAIRN_NODE=$c_GRPC "$CAIRN" import "$T/v1.cairn" --json >"$T/net2.out" 2>&1 || fail "cairn import: $(cat "$T/net2.out")"
[ "$(jq .chunks_held "$T/net2.out")" -gt 20 ] || fail "the import did not resume: $(cat "$T/net2.out")"
[ "$(jq -r '.releases[0].version' "$T/net2.out")" = 1.0 ] || fail "cairn import said: $(cat "$T/net2.out")"
CAIRN_NODE=$c_GRPC "$CAIRN" pull acme/m@1.0 --out "$T/got1" >/dev/null 2>"$T/pull1.err" ||
  fail "pull 1.0 from c: $(cat "$T/pull1.err")"
diff -r -x .cairn "$T/m1" "$T/got1" >&2 || fail "1.0 from c differs"
# A delta for a node that lacks its base: refused whole, saying why.
node_start d
if CAIRN_NODE=$d_GRPC "$CAIRN" import "$T/v2.cairn" >"$T/net4.out" 2>&1; then fail "a delta went into a node without its base"; fi
grep -q "lacks .*Nothing was made visible" "$T/net4.out" || fail "delta without base: $(cat "$T/net4.out")"

# 6. import_from = "none": the network path is closed, with a clear error.
printf '[node]\nimport_from = "none"\n' >"$T/closed.toml"
node_start e --config "$T/closed.toml"
if CAIRN_NODE=$e_GRPC "$CAIRN" import "$T/v1.cairn" >"$T/closed.out" 2>&1; then fail "import_from none took a bundle"; fi
grep -q "import_from" "$T/closed.out" || fail "closed: $(cat "$T/closed.out")"

# 7. From the local store (no node): a release pulled whole is exported from
# the files the store holds, and a fresh node takes it.
CAIRN_NODE=$b_GRPC "$CAIRN" pull acme/m:latest --store "$T/store" >/dev/null 2>"$T/spull.err" ||
  fail "pull into the store: $(cat "$T/spull.err")"
"$CAIRN" export acme/m:latest --local --store "$T/store" --to "$T/local.cairn" >"$T/lexp.out" 2>&1 ||
  fail "export --local: $(cat "$T/lexp.out")"
node_start f
CAIRN_NODE=$f_GRPC "$CAIRN" import "$T/local.cairn" >"$T/limp.out" 2>&1 || fail "import of the store's bundle: $(cat "$T/limp.out")"
grep -q "imported acme/m@2.0 .* :latest" "$T/limp.out" || fail "store bundle: $(cat "$T/limp.out")"
if "$CAIRN" export acme/m@9.9 --local --store "$T/store" --to "$T/none.cairn" >"$T/lnone.out" 2>&1; then fail "exported a release the store lacks"; fi
grep -q "not in the store" "$T/lnone.out" || fail "missing from the store: $(cat "$T/lnone.out")"
[ ! -e "$T/none.cairn" ] || fail "a failed export left a file"
echo "bundle OK"
