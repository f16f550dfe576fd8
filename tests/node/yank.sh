#!/bin/bash
# Yanking end to end, as docs/operators.md's "Yank a release" runbook does
# it: a publisher yanks 2.0 on node a; follower b learns it from a's feed.
# On both, no tag leads to it (cairn pull NAME fails saying why; the Hugging
# Face API's main answers 410), it is still pulled by digest or version with
# a warning, `cairn ls` marks it, and a tag cannot be moved onto it. A key
# the namespace does not delegate cannot yank. `cairn yank --undo`
# withdraws it everywhere.
HERE_NODE=$(cd "$(dirname "$0")" && pwd)
source "$HERE_NODE/../gateway/lib.sh" "$@"
export CAIRN_TRUST=$T/trust.root

node_start a
make_model "$T/m1" 1
publish "$a_GRPC" "$T/m1" acme/m 1.0
make_model "$T/m2" 2
publish "$a_GRPC" "$T/m2" acme/m 2.0
d2=$(sed -n 's/.*"manifest": *"\(sha256:[0-9a-f]*\)".*/\1/p' "$T/publish.json")
[ -n "$d2" ] || fail "no digest in $(cat "$T/publish.json")"
printf '[[upstream]]\naddress = "%s"\n' "$a_GRPC" >"$T/follow.toml"
node_start b --config "$T/follow.toml"
wait_replicated "$b_HTTP" acme/m

# until DESC CMD...: polls CMD (a condition) for up to 30 s.
until_true() {
  local what=$1
  shift
  for _ in $(seq 300); do "$@" && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}
latest_is() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/api/models/acme/m/revision/main")" = "$2" ]; }

# A key the namespace does not delegate cannot yank.
"$CAIRN" keygen --out "$T/stranger.key" >/dev/null
if CAIRN_NODE=$a_GRPC "$CAIRN" yank "acme/m@$d2" --reason "mine" --key "$T/stranger.key" \
  >"$T/stranger.out" 2>&1; then
  fail "a stranger's key yanked a release"
fi
# Without a reason: refused before anything is signed.
if CAIRN_NODE=$a_GRPC "$CAIRN" yank "acme/m@$d2" --key "$T/pub.key" >"$T/noreason.out" 2>&1; then
  fail "yank without --reason was accepted"
fi
grep -q -- "--reason" "$T/noreason.out" || fail "no word of --reason: $(cat "$T/noreason.out")"
latest_is "$a_HTTP" 200 || fail "2.0 was yanked by a refused command"

CAIRN_NODE=$a_GRPC "$CAIRN" yank acme/m:latest --reason "config.json names the wrong tokenizer" \
  --key "$T/pub.key" >"$T/yank.out" 2>&1 || fail "yank: $(cat "$T/yank.out")"
grep -qF "yanked acme/m 2.0 ($d2, yank record v1)" "$T/yank.out" || fail "yank said: $(cat "$T/yank.out")"
# Again: nothing to do, still success.
CAIRN_NODE=$a_GRPC "$CAIRN" yank "acme/m@$d2" --reason "again" --key "$T/pub.key" \
  >"$T/yank2.out" 2>&1 || fail "second yank: $(cat "$T/yank2.out")"
grep -q "already yanked" "$T/yank2.out" || fail "second yank said: $(cat "$T/yank2.out")"

until_true "b to learn of the yank" latest_is "$b_HTTP" 410
for n in a b; do
  grpc_var="${n}_GRPC" http_var="${n}_HTTP"
  if CAIRN_NODE=${!grpc_var} "$CAIRN" pull acme/m --out "$T/$n-latest" >"$T/$n-latest.out" 2>&1; then
    fail "node $n: a tag led to the yanked release"
  fi
  grep -q "config.json names the wrong tokenizer" "$T/$n-latest.out" ||
    fail "node $n: the refusal does not say why: $(cat "$T/$n-latest.out")"
  grep -q "acme/m@$d2" "$T/$n-latest.out" || fail "node $n: the refusal names no digest"
  for ref in "acme/m@$d2" acme/m@2.0; do
    rm -rf "$T/$n-got"
    CAIRN_NODE=${!grpc_var} "$CAIRN" pull "$ref" --out "$T/$n-got" >"$T/$n-got.out" 2>&1 ||
      fail "node $n: pull $ref: $(cat "$T/$n-got.out")"
    grep -q "warning: acme/m 2.0 ($d2) was yanked by its publisher: config.json names the wrong tokenizer" \
      "$T/$n-got.out" || fail "node $n: no warning for $ref: $(cat "$T/$n-got.out")"
    cmp -s "$T/$n-got/model.safetensors" "$T/m2/model.safetensors" || fail "node $n: $ref differs"
  done
  CAIRN_NODE=${!grpc_var} "$CAIRN" ls acme/m >"$T/$n-ls.out" 2>&1 || fail "ls: $(cat "$T/$n-ls.out")"
  grep -q "^  2.0 .*YANKED: config.json names the wrong tokenizer" "$T/$n-ls.out" ||
    fail "node $n: ls does not mark it: $(cat "$T/$n-ls.out")"
  grep "^  1.0 " "$T/$n-ls.out" | grep -q YANKED && fail "node $n: 1.0 is marked yanked"
  curl -s "http://${!http_var}/v1/releases/acme/m" | jq -e --arg d "$d2" \
    '.releases[] | select(.manifest_digest == $d) | .yanked and (.yank_reason | test("wrong tokenizer"))' \
    >/dev/null || fail "node $n: /v1/releases does not mark it"
  curl -s "http://${!http_var}/" | grep -q "YANKED: config.json names the wrong tokenizer" ||
    fail "node $n: the status page does not mark it"
  # The Hugging Face API: main is gone, the version still answers.
  curl -s "http://${!http_var}/api/models/acme/m/revision/main" | grep -q "yanked" ||
    fail "node $n: the 410 does not say why"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://${!http_var}/api/models/acme/m/revision/2.0")" = 200 ] ||
    fail "node $n: version 2.0 is not served over HTTP"
done
# Described (not used) through the tag: info and lineage show the yanked release.
CAIRN_NODE=$b_GRPC "$CAIRN" info acme/m --json >"$T/info.json" 2>"$T/info.err" ||
  fail "info acme/m: $(cat "$T/info.err")"
jq -e --arg d "$d2" '.manifest == $d and .state == "yanked" and .verified and
  (.reason | test("wrong tokenizer"))' "$T/info.json" >/dev/null || fail "info said: $(cat "$T/info.json")"
CAIRN_NODE=$b_GRPC "$CAIRN" info acme/m >"$T/info.txt" 2>&1
grep -q "^acme/m 2.0 (yanked; signature verified)" "$T/info.txt" || fail "info said: $(cat "$T/info.txt")"
CAIRN_NODE=$b_GRPC "$CAIRN" lineage acme/m --json >"$T/lineage.json" 2>&1 ||
  fail "lineage acme/m: $(cat "$T/lineage.json")"
jq -e --arg d "$d2" '.manifest == $d' "$T/lineage.json" >/dev/null || fail "lineage said: $(cat "$T/lineage.json")"
# A tag cannot be moved onto it.
if CAIRN_NODE=$a_GRPC "$CAIRN" tag "acme/m@$d2" stable --key "$T/pub.key" >"$T/tag.out" 2>&1; then
  fail "a tag was moved onto a yanked release"
fi
grep -q "is yanked" "$T/tag.out" || fail "tag said: $(cat "$T/tag.out")"

# Withdrawn: the tag leads to 2.0 again, on a and on b.
CAIRN_NODE=$a_GRPC "$CAIRN" yank "acme/m@$d2" --undo --key "$T/pub.key" >"$T/undo.out" 2>&1 ||
  fail "undo: $(cat "$T/undo.out")"
grep -q "^un-yanked acme/m 2.0" "$T/undo.out" || fail "undo said: $(cat "$T/undo.out")"
until_true "b to learn of the withdrawal" latest_is "$b_HTTP" 200
CAIRN_NODE=$b_GRPC "$CAIRN" pull acme/m --out "$T/b-after" >"$T/b-after.out" 2>&1 ||
  fail "pull after undo: $(cat "$T/b-after.out")"
grep -q "yanked" "$T/b-after.out" && fail "a warning after the undo: $(cat "$T/b-after.out")"
cmp -s "$T/b-after/model.safetensors" "$T/m2/model.safetensors" || fail "pull after undo differs"
echo "yank OK"
