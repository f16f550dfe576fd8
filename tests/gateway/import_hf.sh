#!/usr/bin/env bash
# cairn import-hf: a Hub cache folder filled by the real @huggingface/hub
# client is signed into another node under a new name, keeping the Hub's file
# names and commit id; a plain snapshot folder (with huggingface_hub's .cache
# state) too; a cache snapshot whose link leaves blobs/ is refused.
source "$(dirname "$0")/lib.sh"
node_start a
make_model "$T/m" 7
publish "$a_GRPC" "$T/m" acme/m 1.0
SNAP=$(hf_client "http://$a_HTTP" acme/m "$T/m" "$T/hf-cache" 1 --snapshot-only | tail -1)
SHA=$(basename "$SNAP")
[ -L "$SNAP/config.json" ] || fail "the client's snapshot holds no links: $(ls -l "$SNAP")"
[ -f "$T/hf-cache/models--acme--m/refs/main" ] || fail "no refs/main in the cache"

node_start b
import() { CAIRN_NODE=$b_GRPC CAIRN_TRUST=$T/trust.root "$CAIRN" import-hf "$@" --key "$T/pub.key" --json; }
import "$T/hf-cache/models--acme--m" --name acme/copy --version 1.0 >"$T/import.json" ||
  fail "import-hf of the cache folder"
info=$(curl -sf "http://$b_HTTP/api/models/acme/copy")
echo "$info" | jq -e --arg s "$SHA" '.sha == $s' >/dev/null || fail "commit id not kept: $info"
for f in config.json model.safetensors sub/deeper/notes.txt empty.txt; do
  curl -sf "http://$b_HTTP/acme/copy/resolve/$SHA/$f" -o "$T/got" || fail "resolve $f by commit id"
  cmp "$T/got" "$T/m/$f" || fail "$f differs after import"
done
head=$(curl -sI "http://$b_HTTP/acme/copy/resolve/main/config.json")
echo "$head" | grep -qi "^X-Repo-Commit: $SHA" || fail "X-Repo-Commit: $head"

# A plain snapshot folder, with the download state huggingface_hub leaves.
cp -rL "$SNAP" "$T/plain"
mkdir -p "$T/plain/.cache/huggingface/download" && echo state >"$T/plain/.cache/huggingface/download/x.metadata"
import "$T/plain" --name acme/plain --version 1.0 --commit "$SHA" >/dev/null || fail "import-hf of a plain folder"
files=$(curl -sf "http://$b_HTTP/api/models/acme/plain" | jq -r '.siblings[].rfilename' | sort | tr '\n' ' ')
[ "$files" = "config.json empty.txt model.safetensors sub/deeper/notes.txt tokenizer.json " ] ||
  fail "plain import holds: $files"

# A link out of blobs/ is refused, and nothing is published.
ln -s /etc/hostname "$SNAP/stolen.txt"
if out=$(import "$SNAP" --name acme/evil --version 1.0 2>&1); then fail "a link out of blobs/ was published"; fi
echo "$out" | grep -q 'outside' || fail "unclear refusal: $out"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$b_HTTP/api/models/acme/evil")" = 404 ] || fail "acme/evil exists"
echo "import_hf OK"
