#!/usr/bin/env bash
# Both engines in one sitting: bench/run.sh on SQLite, then on PostgreSQL on this
# same machine, each endpoint against the ceiling in the same run; then, per
# endpoint, PostgreSQL's figures over SQLite's. The ratio of the two ratios to
# the ceiling cancels most of the drift between the runs.
#
#   bench/engines.sh                # 3 runs of 10 s per endpoint and engine
#   RUNS=1 DURATION=5 bench/engines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS=${RUNS:-3} DURATION=${DURATION:-10} SCALE=0
mkdir -p target
ENGINE=sqlite bench/run.sh | tee target/bench-sqlite.txt
ENGINE=postgres bench/run.sh | tee target/bench-postgres.txt
python3 - target/bench-sqlite.txt target/bench-postgres.txt << 'PY'
import re, sys
def table(path):
    rows = {}
    for line in open(path):
        m = re.match(r"(me|members|flags|usage|mixed)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+\d+\s+(\d+)\s+([\d.]+)", line)
        if m:
            rows[m.group(1)] = {"rps": float(m.group(2)), "p50": float(m.group(3)),
                                "p99": float(m.group(4)), "ratio": float(m.group(6))}
    return rows
lite, pg = table(sys.argv[1]), table(sys.argv[2])
print("\n== PostgreSQL / SQLite (medians; reads: me, members, flags; writes: usage; mixed) ==")
print(f"{'endpoint':<10} {'sqlite req/s':>12} {'postgres req/s':>15} {'pg/sqlite':>10} {'ceiling-normalised':>19}")
for e in lite:
    if e in pg:
        print(f"{e:<10} {lite[e]['rps']:>12.0f} {pg[e]['rps']:>15.0f} {pg[e]['rps'] / lite[e]['rps']:>10.2f} "
              f"{pg[e]['ratio'] / lite[e]['ratio']:>19.2f}")
PY
