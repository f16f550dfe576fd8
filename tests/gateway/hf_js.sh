#!/usr/bin/env bash
# The real @huggingface/hub client against a node: modelInfo, listFiles over
# several pages, downloadFile, downloadFileToCacheDir, snapshotDownload,
# fileExists, a missing file and a missing repo; every byte compared with
# what was published.
source "$(dirname "$0")/lib.sh"
cat >"$T/node.toml" <<TOML
[http]
tree_page_size = 7
TOML
node_start hub --config "$T/node.toml"
make_model "$T/m" 1
for i in $(seq 1 20); do echo "shard $i" >"$T/m/sub/part-$i.txt"; done
echo "not ASCII" >"$T/m/sub/naïve café.txt"  # UTF-8 names, a space
publish "$hub_GRPC" "$T/m" acme/m 1.0
# 26 files and 2 directories at 7 per page: 4 pages.
hf_client "http://$hub_HTTP" acme/m "$T/m" "$T/hf-cache" 4
echo "hf_js OK"
