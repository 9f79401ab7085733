#!/usr/bin/env bash
# Compares the chain bench (`metanode bench chain`) of this work tree's release build with another commit's, in
# alternating runs, and prints each pair and the mean change with its 95% confidence interval.
#
#   Benchmarks/chain-pairs.sh [-n PAIRS] BASE [bench chain options...]
#
# BASE is a commit (built in a temporary git worktree with `make release`) or a directory holding a release build's
# `metanode`, its plugin libraries and `metanode-plugins`. Runs default to `--seconds 3 --ceiling-seconds 0`; options
# after BASE are added to both sides (e.g. `--workload test-op`).
#
# Why pairs: this VM's speed drifts by several per cent from minute to minute, more than most changes are worth, so
# two builds run one after the other in separate sessions cannot be compared. Alternating them (base first in odd
# pairs, the work tree first in even ones) puts the drift on both sides; the interval says how far the pairs' mean
# can be trusted: a change whose interval spans 0 is not measured by them.
set -euo pipefail

pairs=8
if [[ "${1:-}" == "-n" ]]; then pairs="$2"; shift 2; fi
if [[ $# -lt 1 ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
base="$1"; shift
[[ "$pairs" =~ ^[0-9]+$ && "$pairs" -ge 2 ]] || { echo "pairs must be a whole number of at least 2, not '$pairs'" >&2; exit 2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/chain-pairs-XXXXXX)"
trap 'git -C "$root" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

build() {  # build SOURCE_DIR: `make release` there, its log shown only if it fails
  make -C "$1" release >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; echo "make release failed in $1" >&2; exit 1; }
}

copy_build() {  # copy_build RELEASE_DIR DEST: the binary, the plugin libraries and the signed bundle
  mkdir -p "$2"
  cp -a "$1/metanode" "$2/"
  cp -a "$1"/*.so "$2/" 2>/dev/null || true
  cp -aL "$1/metanode-plugins" "$2/"
}

# The base is checked before anything is built.
if [[ -d "$base" ]]; then
  [[ -x "$base/metanode" && -d "$base/metanode-plugins" ]] \
    || { echo "$base holds no release build: it needs metanode and metanode-plugins" >&2; exit 2; }
else
  git -C "$root" rev-parse --verify --quiet "$base^{commit}" >/dev/null \
    || { echo "'$base' is neither a directory nor a commit" >&2; exit 2; }
fi

echo "building this work tree (make release)" >&2
build "$root"
new_dir="$(cd "$root" && swift build -c release --show-bin-path 2>/dev/null)"
copy_build "$new_dir" "$work/new"

if [[ -d "$base" ]]; then
  base_dir="$base"
else
  echo "building $base in a temporary worktree (make release; a few minutes the first time)" >&2
  git -C "$root" worktree add --detach "$work/src" "$base" >"$work/worktree.log" 2>&1 \
    || { cat "$work/worktree.log" >&2; echo "could not check out $base in a worktree" >&2; exit 1; }
  build "$work/src"
  copy_build "$(cd "$work/src" && swift build -c release --show-bin-path 2>/dev/null)" "$work/base"
  base_dir="$work/base"
fi

run() {  # run BUILD_DIR [bench options]: one bench, its throughput and CPU per transaction, or nothing if it failed
  local dir="$1" out
  shift
  out="$("$dir/metanode" bench chain --seconds 3 --ceiling-seconds 0 --json "$@" 2>"$work/last-error.txt")" || true
  local tps cpu
  tps="$(sed -n 's/.*"throughputTxPerSecond" *: *\([0-9.]*\).*/\1/p' <<<"$out")"
  cpu="$(sed -n 's/.*"cpuMicrosecondsPerTransaction" *: *\([0-9.]*\).*/\1/p' <<<"$out")"
  if [[ -n "$tps" && -n "$cpu" ]]; then echo "$tps $cpu"; fi  # nothing, and success, so the caller reports it
}

results="$work/pairs.txt"
: >"$results"
printf '%-5s %14s %14s %10s\n' pair "base tx/s" "this tx/s" change
for ((pair = 1; pair <= pairs; pair++)); do
  if ((pair % 2 == 1)); then
    b="$(run "$base_dir" "$@")"; n="$(run "$work/new" "$@")"
  else
    n="$(run "$work/new" "$@")"; b="$(run "$base_dir" "$@")"
  fi
  if [[ -z "$b" || -z "$n" ]]; then
    echo "pair $pair: a run printed no figures; its error:" >&2
    cat "$work/last-error.txt" >&2
    exit 1
  fi
  echo "$b $n" >>"$results"
  read -r bt _ nt _ <<<"$b $n"
  awk -v p="$pair" -v b="$bt" -v n="$nt" 'BEGIN { printf "%-5d %14.0f %14.0f %+9.1f%%\n", p, b, n, 100 * (n / b - 1) }'
done

# The mean of the pairs' relative changes, with Student's t for n-1 degrees of freedom (two-sided 95%).
awk '
  function t95(df) {
    split("12.71 4.30 3.18 2.78 2.57 2.45 2.36 2.31 2.26 2.23 2.20 2.18 2.16 2.14 2.13 2.12 2.11 2.10 2.09 2.09", t, " ")
    return df <= 20 ? t[df] : (df <= 30 ? 2.05 : 2.00)
  }
  function report(name, i, lower_is_better,   k, mean, sd, half, ahead) {
    mean = 0; for (k = 1; k <= n; k++) mean += d[i, k]; mean /= n
    sd = 0; for (k = 1; k <= n; k++) sd += (d[i, k] - mean) ^ 2; sd = sqrt(sd / (n - 1))
    half = t95(n - 1) * sd / sqrt(n)
    ahead = 0; for (k = 1; k <= n; k++) if (lower_is_better ? d[i, k] < 0 : d[i, k] > 0) ahead++
    printf "%-26s base %9.1f  this %9.1f  change %+6.2f%% (95%%: %+.2f%% to %+.2f%%), better in %d of %d\n",
      name, sb[i] / n, sn[i] / n, 100 * mean, 100 * (mean - half), 100 * (mean + half), ahead, n
  }
  { n++; for (i = 1; i <= 2; i++) { sb[i] += $i; sn[i] += $(i + 2); d[i, n] = $(i + 2) / $i - 1 } }
  END {
    print ""
    report("transfers/s (mean)", 1, 0)
    report("CPU µs per transaction", 2, 1)
  }' "$results"
