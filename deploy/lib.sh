# Sourced by the deploy scripts: installs dependencies, builds the binaries,
# and sets REPO, BIN, CAIRN and NODE. Run from anywhere.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
deploy/install-deps.sh
deploy/build.sh cairn cairn-node
BIN=${CAIRN_BUILD_DIR:-build}
[[ $BIN == /* ]] || BIN=$REPO/$BIN
CAIRN=$BIN/client/cairn
NODE=$BIN/mirror-node/cairn-node
