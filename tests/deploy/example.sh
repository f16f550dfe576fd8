#!/usr/bin/env bash
# Runs one of the deploy/ demos as a user would, against BUILD_DIR's
# binaries: each demo checks its own steps and exits non-zero when one does
# not do what it says (docs/operators.md points at both).
#   example.sh federation|s3-frontends BUILD_DIR
set -euo pipefail
NAME=$1 BUILD=$(cd "$2" && pwd)
if [ "$NAME" = s3-frontends ] && [ "$(id -u)" != 0 ]; then
  echo "skipped: needs root for the Ceph daemons"
  exit 77
fi
CAIRN_BUILD_DIR=$BUILD exec bash "$(dirname "$0")/../../deploy/$NAME.sh"
