#!/usr/bin/env bash
# docs/operators.md "Runbook: from install to a USB disk", step by step, in
# its order: install (into a folder of the test's), a trust root, an origin
# started from a checked config, a mirror that joins it, a publisher key and
# a root key rotated and pushed, the mirror backed up while it serves and
# restored as another node that catches up, and a release carried to a site
# with no link by an inventory, a split export and an import.
# Usage: runbook.sh BUILD_DIR
HERE_DEPLOY=$(cd "$(dirname "$0")" && pwd)
source "$HERE_DEPLOY/../gateway/lib.sh" "$@"
SRC=$(cd "$HERE_DEPLOY/../.." && pwd)
cd "$T"

# 1. Install.
mkdir -p bin
install -m 0755 "$BUILD/mirror-node/cairn-node" "$BUILD/client/cairn" bin/
NODE=$T/bin/cairn-node CAIRN=$T/bin/cairn
echo "ok 1: installed"

# 2. The trust root (lib.sh made one for its helpers; the runbook's own
# commands make this one, which every node below uses).
"$CAIRN" keygen --out root.key >/dev/null && "$CAIRN" trust init --key root.key --out trust.root >/dev/null
"$CAIRN" keygen --out alice.key >/dev/null
"$CAIRN" trust delegate --trust trust.root --key root.key --namespace acme --publisher alice.key.pub >/dev/null
export CAIRN_TRUST=$T/trust.root
echo "ok 2: trust root v$("$CAIRN" trust show trust.root --json | jq .version)"

# 3. First start: deploy/node.toml with this test's paths, checked, started.
conf() {  # conf NAME [extra lines]: deploy/node.toml for node NAME
  sed -e "s|^data = .*|data = \"$T/$1\"|" -e "s|^listen = .*|listen = \"127.0.0.1:0\"|" \
    -e "s|^http = .*|http = \"127.0.0.1:0\"|" \
    -e "s|^trust = .*|trust = \"$T/trust.root\"|" "$SRC/deploy/node.toml" >"$1.toml"
  [ $# -gt 1 ] && printf '%s\n' "${@:2}" >>"$1.toml"
  "$NODE" check-config "$1.toml" >"$1.check" 2>&1 || fail "check-config $1.toml: $(cat "$1.check")"
}
conf origin
node_start origin --config origin.toml
make_model "$T/qwen" 1
CAIRN_NODE=$origin_GRPC "$CAIRN" publish qwen --name acme/qwen-7b --version 1.0 --key alice.key \
  >publish1.out 2>&1 || fail "publish: $(cat publish1.out)"
echo "ok 3: origin started from a checked config, acme/qwen-7b 1.0 published"

# 4. Join a federation.
conf mirror '[[upstream]]' "address = \"$origin_GRPC\""
node_start mirror --config mirror.toml
wait_replicated "$mirror_HTTP" acme/qwen-7b
CAIRN_NODE=$mirror_GRPC "$CAIRN" status >status.txt 2>&1 || fail "status: $(cat status.txt)"
grep -q "$origin_GRPC" status.txt || fail "status names no upstream: $(cat status.txt)"
CAIRN_NODE=$mirror_GRPC "$CAIRN" ls acme/qwen-7b >ls.txt 2>&1 && grep -q "^  1\.0 " ls.txt || fail "ls: $(cat ls.txt)"
echo "ok 4: the mirror joined and replicated"

# 5. Rotate keys: a leaked publisher key, then a root key.
"$CAIRN" keygen --out alice2.key >/dev/null
"$CAIRN" trust revoke --trust trust.root --key root.key --publisher alice.key.pub \
  --replacement alice2.key.pub >revoke.out 2>&1 || fail "revoke: $(cat revoke.out)"
"$CAIRN" trust push --trust trust.root --node "$origin_GRPC" >push.out 2>&1 || fail "push: $(cat push.out)"
# What only alice signed is withheld everywhere, until re-signed (asked over
# HTTP: the mirror's own verdict, not the client's). The waits below end as
# soon as the mirror has it, bounded at 120 s for a loaded machine.
file_code() { curl -s -o /dev/null -w '%{http_code}' "http://$1/v1/files/acme/qwen-7b/1.0/config.json"; }
withheld_on_mirror() { [ "$(file_code "$mirror_HTTP")" = 410 ]; }
for _ in $(seq 1200); do withheld_on_mirror && break; sleep 0.1; done
withheld_on_mirror || fail "the mirror still serves a release only the revoked key signed"
CAIRN_NODE=$origin_GRPC "$CAIRN" publish qwen --name acme/qwen-7b --version 1.0 --key alice2.key \
  >publish2.out 2>&1 || fail "re-sign: $(cat publish2.out)"
served_on_mirror() {
  rm -rf "$T/got"
  CAIRN_NODE=$mirror_GRPC "$CAIRN" pull acme/qwen-7b --out "$T/got" >/dev/null 2>&1
}
for _ in $(seq 1200); do served_on_mirror && break; sleep 0.1; done
served_on_mirror || fail "the re-signed release is not served by the mirror"
cmp -s got/model.safetensors qwen/model.safetensors || fail "the re-signed release differs"
"$CAIRN" keygen --out root2.key >/dev/null
"$CAIRN" trust rotate --trust trust.root --key root.key --key root2.key --add-root root2.key.pub \
  --remove-root root.key.pub >rotate.out 2>&1 || fail "rotate: $(cat rotate.out)"
v=$("$CAIRN" trust show trust.root --json | jq .version)
"$CAIRN" trust push --trust trust.root --node "$origin_GRPC" >push2.out 2>&1 || fail "push: $(cat push2.out)"
mirror_has_root() { CAIRN_NODE=$mirror_GRPC "$CAIRN" status >st.txt 2>&1 && grep -q "trust root v$v" st.txt; }
for _ in $(seq 1200); do mirror_has_root && break; sleep 0.1; done
mirror_has_root || fail "the mirror did not adopt trust root v$v: $(cat st.txt)"
echo "ok 5: publisher key revoked and replaced, release re-signed, root key rotated (v$v on the mirror)"

# 6. Back up the mirror while it serves; restore it as another node, which
# catches up on what was published since.
"$NODE" backup --config mirror.toml --to "$T/restored" >backup.out 2>&1 || fail "backup: $(cat backup.out)"
node_stop mirror
make_model "$T/qwen2" 2
CAIRN_NODE=$origin_GRPC "$CAIRN" publish qwen2 --name acme/qwen-7b --version 2.0 --key alice2.key \
  >publish3.out 2>&1 || fail "publish 2.0: $(cat publish3.out)"
"$NODE" scrub --now --data "$T/restored" --trust trust.root >scrub.out 2>&1 || fail "scrub of the copy: $(cat scrub.out)"
# The copy itself holds 1.0 (before any catching up).
d1=$(jq -r .manifest <(CAIRN_NODE=$origin_GRPC "$CAIRN" info acme/qwen-7b@1.0 --json))
"$NODE" inventory --data "$T/restored" --trust trust.root --to restored.inv >/dev/null 2>&1 ||
  fail "inventory of the copy"
grep -q "^release acme/qwen-7b $d1\$" restored.inv || fail "the copy lacks 1.0: $(cat restored.inv)"
conf restored '[[upstream]]' "address = \"$origin_GRPC\""
node_start restored --config restored.toml
has_two() { curl -s "http://$restored_HTTP/v1/releases/acme/qwen-7b" | jq -e '[.releases[].version] | index("2.0")' >/dev/null; }
for _ in $(seq 1200); do has_two && break; sleep 0.1; done
has_two || fail "the restored node did not catch up on 2.0"
echo "ok 6: backed up while serving, restored elsewhere, caught up"

# 7. Move a model by USB disk to a site with no link.
conf site
node_start site --config site.toml
mkdir -p usb
"$NODE" inventory --data "$T/site" --to usb/site.inv >inv.out 2>&1 || fail "inventory: $(cat inv.out)"
CAIRN_NODE=$origin_GRPC "$CAIRN" export acme/qwen-7b@1.0 --have usb/site.inv --split 4M \
  --to usb/qwen.cairn >export.out 2>&1 || fail "export: $(cat export.out)"
[ -f usb/qwen.cairn.002 ] || fail "no split volumes: $(ls usb)"
"$NODE" import --data "$T/site" usb/qwen.cairn >import.out 2>&1 || fail "import: $(cat import.out)"
rm -rf got
CAIRN_NODE=$site_GRPC "$CAIRN" pull acme/qwen-7b@1.0 --out got >pull.out 2>&1 || fail "pull at the site: $(cat pull.out)"
cmp -s got/model.safetensors qwen/model.safetensors || fail "the site's copy differs"
echo "ok 7: carried by disk, imported, pulled verified at the site"
echo "runbook OK"
