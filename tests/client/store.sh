#!/bin/bash
# The cairn CLI as a new user meets it: the managed store (pull without
# --out, tag links, no second copy, versions, single files, globs, --offline,
# rm, ls --local, cache du/prune/verify, a size limit), cairn tag, exact ls,
# progress lines, several mirrors (a refused port, an unresolvable name, a
# mirror that never answers, publish to two nodes), config errors, --version,
# unknown commands and the generated bash completion. Real binaries, nodes on
# 127.0.0.1 port 0.
HERE_CLIENT=$(cd "$(dirname "$0")" && pwd)
source "$HERE_CLIENT/../gateway/lib.sh" "$@"
export HOME=$T/home XDG_DATA_HOME=$T/data
mkdir -p "$HOME"
STORE=$T/data/cairn
node_start a
node_start b
export CAIRN_TRUST=$T/trust.root CAIRN_NODE=$a_GRPC
jqr() { jq -r "$@"; }

# ---- the managed store ----
make_model "$T/m1" 1
publish "$a_GRPC" "$T/m1" acme/m 1.0
P1=$("$CAIRN" pull acme/m 2>"$T/pull1.err") || fail "pull into the store: $(cat "$T/pull1.err")"
[ "$P1" = "$STORE/models/acme/m/releases/1.0-$(jqr .manifest "$T/publish.json" | cut -c8-19)" ] ||
  fail "pull printed '$P1', not the release's directory in the store"
cmp -s "$P1/model.safetensors" "$T/m1/model.safetensors" || fail "pulled file differs"
[ "$(readlink "$STORE/models/acme/m/latest")" = "releases/$(basename "$P1")" ] || fail "no latest link"
grep -q "pulled acme/m 1.0" "$T/pull1.err" || fail "no summary on stderr"
# Again: nothing fetched, nothing rewritten.
ino=$(stat -c %i "$P1/model.safetensors")
"$CAIRN" pull acme/m --json >"$T/again.json" || fail "second pull"
[ "$(jqr .chunks_fetched "$T/again.json")" = 0 ] || fail "second pull fetched chunks"
# (and read nothing back: the file is as cairn wrote it, by its fingerprint)
[ "$(jqr .bytes_local_unread "$T/again.json")" = "$(jqr .bytes_total "$T/again.json")" ] ||
  fail "second pull re-read its unchanged files: $(cat "$T/again.json")"
# A plain tree from the store's unchanged files: copied, not re-read.
"$CAIRN" pull acme/m --out "$T/plain" --json >"$T/plain.json" || fail "pull --out from local files"
[ "$(jqr .bytes_fetched "$T/plain.json")" = 0 ] || fail "pull --out fetched"
[ "$(jqr .bytes_local_unread "$T/plain.json")" -gt 0 ] || fail "pull --out re-read unchanged files"
cmp -s "$T/plain/model.safetensors" "$T/m1/model.safetensors" || fail "pull --out from local files differs"
rm -rf "$T/plain"
[ "$(stat -c %i "$P1/model.safetensors")" = "$ino" ] || fail "second pull rewrote the file"

# A derivative: only its changed chunks come over the wire, and the store
# holds no second copy of anything (files + a small index).
cp -r "$T/m1" "$T/m2"
head -c 600000 /dev/urandom | dd of="$T/m2/model.safetensors" bs=1 seek=3000000 conv=notrunc status=none
publish "$a_GRPC" "$T/m2" acme/m 2.0
"$CAIRN" pull acme/m --json >"$T/d.json" || fail "derivative pull"
fetched=$(jqr .bytes_fetched "$T/d.json")
# The changed bytes plus the chunks cut across at each edge (and one more
# if a cut within the minimum size shifts the next): chunks are at most 256
# KiB, and the file is 6 MB, so the bound still fails if dedup breaks.
[ "$fetched" -lt $((600000 + 3 * 262144)) ] || fail "derivative fetched $fetched bytes for 600 kB changed"
P2=$(jqr .path "$T/d.json")
[ "$(readlink "$STORE/models/acme/m/latest")" = "releases/$(basename "$P2")" ] || fail "latest did not move to 2.0"
files=$(( $(du -sb --apparent-size "$P1" | cut -f1) + $(du -sb --apparent-size "$P2" | cut -f1) ))
"$CAIRN" cache du --json >"$T/du.json"
total=$(jqr .bytes "$T/du.json")
[ "$total" -lt $(( files + 2000000 )) ] || fail "store takes $total bytes for $files bytes of files: a second copy?"
[ ! -e "$STORE/packs" ] || fail "the store keeps pack files"

# What the store records of a file describes the file it held, not its path:
# 2.0 pulled over 1.0 in the same tree (same size, same name) is written; a
# file replaced by hand and pulled over is re-indexed under a new record, so
# a later pull of 1.0 takes nothing from it unread.
"$CAIRN" pull acme/m@1.0 --out "$T/same" --json >/dev/null || fail "1.0 --out"
"$CAIRN" pull acme/m@2.0 --out "$T/same" --json >/dev/null || fail "2.0 over 1.0"
cmp -s "$T/same/model.safetensors" "$T/m2/model.safetensors" || fail "2.0 pulled over 1.0 kept 1.0's bytes"
# (a store of its own, so that the tree replaced by hand is the only local
# file the index knows for 1.0's chunks)
CAIRN_STORE=$T/store3 "$CAIRN" pull acme/m@1.0 --out "$T/byhand" --json >/dev/null || fail "1.0 --out again"
cp "$T/m2/model.safetensors" "$T/byhand/model.safetensors"  # in place: same inode
CAIRN_STORE=$T/store3 "$CAIRN" pull acme/m@2.0 --out "$T/byhand" --json >/dev/null ||
  fail "2.0 over a file replaced by hand"
CAIRN_STORE=$T/store3 "$CAIRN" pull acme/m@1.0 --out "$T/again1" --json >/dev/null || fail "1.0 once more"
cmp -s "$T/again1/model.safetensors" "$T/m1/model.safetensors" ||
  fail "1.0 was assembled from a file that since holds 2.0"
rm -rf "$T/same" "$T/byhand" "$T/again1"
# A partial pull of 2.0 over a tree of 1.0: the 1.0 file still there is
# checked against 2.0's manifest by verify, not skipped.
"$CAIRN" pull acme/m@1.0 --out "$T/mixed" --json >/dev/null || fail "1.0 for the mixed tree"
"$CAIRN" pull acme/m@2.0 config.json --out "$T/mixed" --json >/dev/null || fail "2.0 config.json only"
"$CAIRN" verify "$T/mixed" >"$T/mixed.out" 2>&1 && fail "verify passed a tree mixing 1.0 and 2.0: $(cat "$T/mixed.out")"
grep -q "model.safetensors" "$T/mixed.out" || fail "verify did not name the 1.0 file: $(cat "$T/mixed.out")"
rm -rf "$T/mixed"
# A file planted in a store release (a .py beside the weights): cache verify
# names it; a pull of the release removes it.
echo 'import os' >"$P2/evil.py"
"$CAIRN" cache verify >"$T/planted.out" 2>&1 && fail "cache verify passed a planted file"
grep -q "evil.py: not in the manifest" "$T/planted.out" || fail "cache verify: $(cat "$T/planted.out")"
"$CAIRN" pull acme/m@2.0 >/dev/null 2>"$T/planted.err" || fail "pull over a planted file"
[ ! -e "$P2/evil.py" ] || fail "the pull left the planted file in the store"
grep -q "removed 1 file(s) the release does not have" "$T/planted.err" || fail "no word of the removal"
"$CAIRN" cache verify >/dev/null || fail "cache verify after the pull"

# A partial file an interrupted pull left under the pid this cairn has now
# (in a container, cairn is pid 1 every time) goes like any other: a partial
# is kept only while its writer holds a lock on it. (Needs a PID namespace.)
if unshare --pid --fork --mount-proc true 2>/dev/null; then
  "$CAIRN" pull acme/m@1.0 --out "$T/ns" --json >/dev/null || fail "pull for the pid test"
  head -c 1000 /dev/urandom >"$T/ns/.cairn-partial-1-0-0badc0de"
  rm "$T/ns/model.safetensors"
  unshare --pid --fork --mount-proc "$CAIRN" pull acme/m@1.0 --out "$T/ns" --json >/dev/null 2>"$T/ns.err" ||
    fail "pull as pid 1: $(cat "$T/ns.err")"
  [ ! -e "$T/ns/.cairn-partial-1-0-0badc0de" ] || fail "a partial left under this pid was kept"
  rm -rf "$T/ns"
else
  echo "(no PID namespace here: the same-pid partial check is skipped)"
fi

# A version, not a tag; a tag that does not exist says so.
"$CAIRN" pull acme/m@1.0 --json >"$T/v.json" || fail "pull by version"
[ "$(jqr .path "$T/v.json")" = "$P1" ] || fail "acme/m@1.0 is not release 1.0"
"$CAIRN" pull acme/m:1.0 2>"$T/tag.err" && fail "acme/m:1.0 (a tag) pulled"
grep -q "unknown name or tag" "$T/tag.err" || fail "wrong error for a missing tag: $(cat "$T/tag.err")"

# Single files and globs: only their chunks are fetched.
"$CAIRN" pull acme/m config.json --out "$T/one" --json --store "$T/other-store" >"$T/one.json" ||
  fail "single-file pull"
[ "$(ls "$T/one")" = config.json ] || fail "single-file pull wrote $(ls "$T/one")"
[ "$(jqr .bytes_fetched "$T/one.json")" -lt 100 ] || fail "single-file pull fetched more than the file"
[ "$(jqr .partial "$T/one.json")" = true ] || fail "not marked partial"
"$CAIRN" verify "$T/one" >/dev/null || fail "verify of a partial pull"
"$CAIRN" pull acme/m --include '*.json' --exclude 'tok*' --out "$T/glob" --store "$T/other-store" >/dev/null ||
  fail "glob pull"
[ "$(cd "$T/glob" && find . -type f -not -path './.cairn/*' | sort | tr '\n' ' ')" = "./config.json " ] ||
  fail "glob pull wrote $(cd "$T/glob" && find . -type f)"
"$CAIRN" pull acme/m nope.bin --out "$T/x" 2>"$T/nope.err" && fail "pulled a file that does not exist"
grep -q "has no file nope.bin" "$T/nope.err" || fail "wrong error: $(cat "$T/nope.err")"

# cairn tag moves a tag without files; ls names exactly.
"$CAIRN" tag acme/m@1.0 stable --key "$T/pub.key" --json >"$T/tag.json" || fail "cairn tag"
[ "$(jqr .tag_version "$T/tag.json")" = 1 ] || fail "first tag version"
"$CAIRN" tag acme/m@2.0 stable --key "$T/pub.key" --json >"$T/tag2.json" || fail "cairn tag again"
[ "$(jqr .tag_version "$T/tag2.json")" = 2 ] || fail "tag version did not advance"
[ "$(jqr .previous_manifest "$T/tag2.json")" = "$(jqr .manifest "$T/tag.json")" ] || fail "previous target"
"$CAIRN" info acme/m:stable --json | jq -e '.version == "2.0" and (.tags | map(.tag) | index("stable"))' >/dev/null ||
  fail "info does not show the stable tag on 2.0"
publish "$a_GRPC" "$T/m1" acme/m-q4 1.0
[ "$("$CAIRN" ls acme/m --json | jq -r 'map(.name) | join(" ")')" = "acme/m" ] || fail "ls acme/m is not exact"
[ "$("$CAIRN" ls acme/ --json | jq -r 'map(.name) | join(" ")')" = "acme/m acme/m-q4" ] || fail "ls acme/"
[ "$("$CAIRN" ls 'acme/m-*' --json | jq -r 'map(.name) | join(" ")')" = "acme/m-q4" ] || fail "ls glob"
# Nothing found is said: an exact name is an error, a pattern is not.
"$CAIRN" ls acme/nope >/dev/null 2>"$T/nope.err" && fail "ls of a missing name succeeded"
grep -q "no model acme/nope on " "$T/nope.err" || fail "ls acme/nope said: $(cat "$T/nope.err")"
"$CAIRN" ls 'zzz/*' >/dev/null 2>"$T/nope.err" || fail "ls of an empty pattern failed"
grep -q "no model matches zzz/\* on " "$T/nope.err" || fail "ls 'zzz/*' said: $(cat "$T/nope.err")"
"$CAIRN" info acme/m@1.0 | grep -Eq "published  20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z" || fail "no ISO date in info"

# Hostile local state: --out into the store, a FIFO planted in a release,
# a tag that is a path component; a one-file pull of a complete release.
"$CAIRN" pull acme/m-q4 --out "$STORE/models/acme/m/latest" 2>"$T/in.err" && fail "--out inside the store accepted"
grep -q "is inside the store" "$T/in.err" || fail "wrong error: $(cat "$T/in.err")"
cmp -s "$P2/model.safetensors" "$T/m2/model.safetensors" || fail "--out into the store changed a release"
rm "$P2/tokenizer.json" && mkfifo "$P2/tokenizer.json"
timeout 60 "$CAIRN" pull acme/m >/dev/null 2>"$T/fifo.err" || fail "pull over a FIFO (rc $?): $(cat "$T/fifo.err")"
[ -f "$P2/tokenizer.json" ] && [ ! -p "$P2/tokenizer.json" ] || fail "the FIFO was not replaced"
timeout 60 "$CAIRN" cache verify >/dev/null || fail "cache verify after the FIFO was replaced"
"$CAIRN" tag acme/m@1.0 .. --key "$T/pub.key" 2>"$T/dots.err" && fail "tag .. accepted"
grep -q "must not start with '.'" "$T/dots.err" || fail "wrong error: $(cat "$T/dots.err")"
"$CAIRN" pull acme/m config.json >/dev/null 2>&1 || fail "one-file pull into the store"
[ ! -e "$P2/.cairn/partial" ] || fail "a one-file pull marked a complete release partial"

# Progress as lines for a log.
"$CAIRN" pull acme/m-q4 --progress lines 2>"$T/progress.err" >/dev/null || fail "pull with progress lines"
grep -Eq "^cairn: pulling 100.0%" "$T/progress.err" || fail "no progress line: $(cat "$T/progress.err")"

# ---- offline, rm, ls --local, verify, prune, size limit ----
kill "$a_PID"; wait "$a_PID" 2>/dev/null || true
"$CAIRN" pull acme/m@1.0 --offline --out "$T/off" --json >"$T/off.json" || fail "offline restore"
[ "$(jqr .bytes_fetched "$T/off.json")" = 0 ] || fail "offline fetched"
"$CAIRN" verify "$T/off" >/dev/null || fail "offline tree does not verify"
"$CAIRN" pull acme/never --offline 2>"$T/never.err" && fail "offline pull of something never pulled"
grep -q "never pulled into the store" "$T/never.err" || fail "wrong offline error: $(cat "$T/never.err")"
"$CAIRN" ls --local acme/m --json | jq -e 'map(.version) == ["1.0","2.0"]' >/dev/null || fail "ls --local acme/m"
"$CAIRN" ls --local | grep -Eq "20[0-9]{2}-[0-9]{2}-[0-9]{2}T" || fail "ls --local has no ISO time"
# A file changed in the store: verify names it; pulling the release repairs it.
# The change keeps the file's size and modification time: a local pull takes
# chunks from a file unread only while its fingerprint (which includes the
# change time) is the one recorded when cairn wrote it; here it must re-read,
# find the damage and take the chunk from the other release's file.
touch -r "$P2/model.safetensors" "$T/mtime.ref"
printf 'XXXX' | dd of="$P2/model.safetensors" bs=1 seek=100 conv=notrunc status=none
touch -r "$T/mtime.ref" "$P2/model.safetensors"
"$CAIRN" pull acme/m@2.0 --offline --out "$T/off2" --json >"$T/off2.json" || fail "offline restore past a changed file"
cmp -s "$T/off2/model.safetensors" "$T/m2/model.safetensors" || fail "a local pull copied a changed file's bytes"
rm -rf "$T/off2"
"$CAIRN" cache verify >"$T/verify.out" 2>&1 && fail "cache verify passed a damaged file"
grep -q "DAMAGED acme/m 2.0" "$T/verify.out" || fail "cache verify: $(cat "$T/verify.out")"
node_start a  # again, on the same data
export CAIRN_NODE=$a_GRPC
"$CAIRN" pull acme/m@2.0 --json >"$T/repair.json" || fail "repairing pull"
cmp -s "$P2/model.safetensors" "$T/m2/model.safetensors" || fail "not repaired"
"$CAIRN" cache verify >/dev/null || fail "cache verify after repair"
"$CAIRN" rm acme/m@1.0 >/dev/null || fail "rm"
[ ! -e "$P1" ] || fail "rm left the directory"
"$CAIRN" rm acme/m@1.0 2>/dev/null && fail "rm of a release not in the store"
# rm forgets the release's chunks at once; a plain tree deleted by hand is
# forgotten by prune.
rm -rf "$T/off"
# (and a file a killed pull into the store left: its pid is gone)
dead=$(sh -c 'echo $$')
head -c 100000 /dev/urandom >"$P2/.cairn-partial-$dead-0-0badc0de"
"$CAIRN" cache prune --json >"$T/prune.json" || fail "prune"
[ "$(jqr .stale_entries_dropped "$T/prune.json")" -gt 0 ] || fail "prune dropped no entry of the deleted tree"
[ "$(jqr .partial_files_removed "$T/prune.json")" = 1 ] || fail "prune: $(cat "$T/prune.json")"
[ ! -e "$P2/.cairn-partial-$dead-0-0badc0de" ] || fail "prune left a killed pull's file"
"$CAIRN" cache prune --json >"$T/prune2.json" || fail "prune again"
[ "$(jqr .stale_entries_dropped "$T/prune2.json")" = 0 ] || fail "prune dropped live entries"
# A size limit: the least recently used release goes, never the one pulled.
mkdir -p "$T/config/cairn"
echo 'store_max_size = "9M"' >"$T/config/cairn/config.toml"
"$CAIRN" pull acme/m-q4 --json >"$T/lru.json" 2>"$T/lru.err" || fail "pull under a size limit"
jq -e '.evicted == ["acme/m 2.0"]' "$T/lru.json" >/dev/null || fail "eviction: $(cat "$T/lru.json")"
grep -q "evicted acme/m 2.0" "$T/lru.err" || fail "eviction not told"
[ -d "$(jqr .path "$T/lru.json")" ] || fail "the pulled release was evicted"
rm "$T/config/cairn/config.toml"

# ---- several mirrors ----
# A mirror that accepts connections and never says a word.
node -e 'const s = require("net").createServer(() => {});
s.listen(0, "127.0.0.1", () => console.log(s.address().port));' >"$T/blackhole.port" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/blackhole.port" ] && break; sleep 0.05; done
BH=127.0.0.1:$(cat "$T/blackhole.port")
for nodes in "127.0.0.1:1,$a_GRPC" "nosuch.invalid:7070,$a_GRPC" "127.0.0.1:1, $a_GRPC" "$BH,$a_GRPC"; do
  start=$(date +%s%N)
  CAIRN_NODE=$nodes "$CAIRN" pull acme/m-q4 --out "$T/fo" --json >/dev/null 2>"$T/fo.err" ||
    fail "pull with CAIRN_NODE='$nodes': $(cat "$T/fo.err")"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  [ "$ms" -lt 5000 ] || fail "CAIRN_NODE='$nodes' took $ms ms (the timeout is 15 s)"
done
# publish to two nodes: the same signed release on each; or nothing.
make_model "$T/m3" 3
"$CAIRN" publish "$T/m3" --name acme/two --version 1 --key "$T/pub.key" --node "$a_GRPC" \
  --node "$b_GRPC" --json >"$T/two.json" || fail "publish to two nodes"
[ "$(jq '.nodes | length' "$T/two.json")" = 2 ] || fail "not published to both"
d1=$(CAIRN_NODE=$a_GRPC "$CAIRN" info acme/two --json | jqr .manifest)
d2=$(CAIRN_NODE=$b_GRPC "$CAIRN" info acme/two --json | jqr .manifest)
[ "$d1" = "$d2" ] && [ "$d1" = "$(jqr .manifest "$T/two.json")" ] || fail "the nodes hold different releases"
"$CAIRN" publish "$T/m3" --name acme/three --version 1 --key "$T/pub.key" --node "$a_GRPC" \
  --node 127.0.0.1:1 2>"$T/three.err" && fail "published with a node unreachable"
grep -q "nothing was published" "$T/three.err" || fail "wrong error: $(cat "$T/three.err")"
CAIRN_NODE=$a_GRPC "$CAIRN" info acme/three 2>/dev/null && fail "acme/three reached a node"
"$CAIRN" ls --node 127.0.0.1:1 --node "$b_GRPC" 2>"$T/ls.err" >/dev/null || fail "ls with a dead mirror"
grep -q "listing $b_GRPC" "$T/ls.err" || fail "ls does not say which node: $(cat "$T/ls.err")"

# ---- habits ----
"$CAIRN" --version | grep -Eq '^cairn [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
"$CAIRN" pul 2>"$T/unk.err" && fail "unknown command accepted"
grep -q "unknown command 'pul' (did you mean pull?)" "$T/unk.err" || fail "$(cat "$T/unk.err")"
"$CAIRN" trust show >/dev/null || fail "trust show does not take CAIRN_TRUST"
CAIRN_TRUST= "$CAIRN" trust show 2>"$T/ts.err" && fail "trust show with no trust file"
grep -q "no trust root: .* or set trust in $T/config/cairn/config.toml" "$T/ts.err" || fail "$(cat "$T/ts.err")"
CAIRN_NODE= "$CAIRN" ls 2>"$T/nn.err" && fail "ls with no node"
grep -q "or set node in $T/config/cairn/config.toml" "$T/nn.err" || fail "$(cat "$T/nn.err")"
printf 'store = "~/mystore"\n' >"$T/config/cairn/config.toml"
"$CAIRN" pull acme/m-q4 >/dev/null 2>&1 || fail "pull with store = ~/mystore"
[ -d "$HOME/mystore/models/acme/m-q4" ] || fail "~ was not expanded"
[ ! -e "./~" ] || fail "a folder named ~ was made"
printf 'node = "x:1"\nbogus = 1\n' >"$T/config/cairn/config.toml"
"$CAIRN" ls 2>"$T/cfg.err" && fail "unknown config key accepted"
grep -q "config $T/config/cairn/config.toml:2: unknown key bogus" "$T/cfg.err" || fail "$(cat "$T/cfg.err")"
printf 'timeout = "x\n' >"$T/config/cairn/config.toml"
"$CAIRN" ls 2>"$T/cfg2.err" && fail "broken config accepted"
grep -q "config $T/config/cairn/config.toml:1:" "$T/cfg2.err" || fail "$(cat "$T/cfg2.err")"
rm "$T/config/cairn/config.toml"
# Completion generated from the CLI: `cairn pu<TAB>`, `cairn pul<TAB>` and `cairn cache <TAB>`.
"$CAIRN" completion bash >"$T/cairn.bash"
(
  source "$T/cairn.bash"
  COMP_WORDS=(cairn pu); COMP_CWORD=1; _cairn
  [ "${COMPREPLY[*]}" = "publish pull" ] || { echo "completion of pu: ${COMPREPLY[*]}"; exit 1; }
  COMP_WORDS=(cairn pul); COMP_CWORD=1; _cairn
  [ "${COMPREPLY[*]}" = "pull" ] || { echo "completion of pul: ${COMPREPLY[*]}"; exit 1; }
  COMP_WORDS=(cairn cache ""); COMP_CWORD=2; _cairn
  [ "${COMPREPLY[*]}" = "du prune verify" ] || { echo "completion of cache: ${COMPREPLY[*]}"; exit 1; }
  COMP_WORDS=(cairn pull --off); COMP_CWORD=2; _cairn
  [ "${COMPREPLY[*]}" = "--offline" ] || { echo "completion of --off: ${COMPREPLY[*]}"; exit 1; }
) || fail "bash completion"
# The package layout: binaries, the completion, the unit, example configs.
# (the completion is an ALL target; a build of named targets may lack it)
cmake --build "$BUILD" --target cairn_completion >/dev/null || fail "building the completion"
DESTDIR=$T/pkg cmake --install "$BUILD" --prefix /usr >/dev/null || fail "cmake --install"
for f in usr/bin/cairn usr/bin/cairn-node usr/share/bash-completion/completions/cairn \
  usr/lib/systemd/system/cairn-node.service usr/share/doc/cairn/examples/node.toml; do
  [ -f "$T/pkg/$f" ] || fail "cmake --install did not install /$f"
done
cmp -s "$T/pkg/usr/share/bash-completion/completions/cairn" "$T/cairn.bash" || fail "stale completion"
echo "store.sh: OK"
