#!/usr/bin/env bash
# DockLock against crun and runc on this machine, same busybox root filesystem, same run:
#   1. `metanode bench docklock`: sequential /bin/true lifecycles through the node's local API (request → result,
#      as an orchestrator drives it), then receipts per second with concurrent clients;
#   2. ../shared/bench/container-baseline.sh with `metanode docklock run` (process start included) as a candidate
#      next to crun and runc with the Docker seccomp profile and limits, and the kernel floors.
# Needs root and the release build (make bench-docklock builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(swift build -c release --show-bin-path)
METANODE="$BIN/metanode"
BASELINE=${BASELINE:-$(pwd)/../shared/bench/container-baseline.sh}
DATA=$(mktemp -d /tmp/docklock-bench-XXXXXX)
trap '[ -n "${NODE:-}" ] && kill "$NODE" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT

# The same busybox tree container-baseline.sh builds for crun and runc.
ROOTFS="$DATA/rootfs"
mkdir -p "$ROOTFS"/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$ROOTFS/bin/"
for a in $("$ROOTFS/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOTFS/bin/$a"; done

"$METANODE" node init --dev --data-dir "$DATA/node" --bundled-plugins "$BIN/metanode-plugins" >/dev/null
"$METANODE" docklock image build "$ROOTFS" --tag busybox --data-dir "$DATA/node" >/dev/null
"$METANODE" node start --data-dir "$DATA/node" >"$DATA/node.log" 2>&1 &
NODE=$!
for _ in $(seq 1 100); do
  "$METANODE" docklock ps --data-dir "$DATA/node" >/dev/null 2>&1 && break
  sleep 0.2
done

"$METANODE" bench docklock --data-dir "$DATA/node" --runs "${RUNS:-200}" ${BENCH_ARGS:-}
if [ -x "$BASELINE" ]; then
  echo
  # metanode-start: the CLI binary's own start (dynamic linking, Swift runtime), the floor of docklock-cli.
  "$BASELINE" --runs "${BASELINE_RUNS:-50}" \
    --candidate docklock-cli "$METANODE docklock run --data-dir $DATA/node busybox -- /bin/true" \
    --candidate metanode-start "$METANODE --version"
else
  echo "($BASELINE not found: crun/runc comparison skipped)"
fi
