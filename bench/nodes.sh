#!/usr/bin/env bash
# One node against two on the same PostgreSQL (a throwaway cluster on this
# machine): the demo plus 10,000 orgs of 20 members; per endpoint, wrk with 64
# connections against one node, then 32 against each of two nodes at once
# (requests/s summed), medians of RUNS; and each node's CPU (cores busy) during
# the two-node runs. On one 2-core machine the nodes, PostgreSQL and wrk share
# the cores: the ratio says what a second node costs or brings here, not on
# separate machines.
#
#   bench/nodes.sh                   # 3 runs of 10 s per endpoint
#   RUNS=1 DURATION=5 bench/nodes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
ENGINE=postgres
. bench/lib.sh

db=$(new_db bench)
DATABASE_URL="$db" PLINTH_LOG=warn "$bin" seed --demo --orgs 10000 --members 20 > /dev/null

node() { # -> "pid base" (run in a subshell: the caller records the pid)
    local port
    port=$(free_port)
    DATABASE_URL="$db" PLINTH_LOG=warn PLINTH_ADDR="127.0.0.1:$port" \
        PLINTH_AUTH_RATE_PER_IP=100000 PLINTH_AUTH_RATE_PER_ACCOUNT=100000 \
        "$bin" serve > "$work/node-$port.log" 2>&1 &
    until curl -sf "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; do sleep 0.01; done
    echo "$! http://127.0.0.1:$port"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }

read -r pid_a base_a <<< "$(node)"
pids+=("$pid_a")
export TOKEN
TOKEN=$(curl -sf -X POST "$base_a/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"member@acme.test","password":"demo-password-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
org=$(curl -sf "$base_a/api/orgs" -H "authorization: Bearer $TOKEN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')

declare -A one two cpu_a cpu_b
endpoints="me members usage"
path_of() { case $1 in me) echo /api/auth/me ;; members) echo "/api/orgs/$org/members" ;; usage) echo "/api/orgs/$org/usage" ;; esac; }
script_of() { case $1 in usage) echo usage.lua ;; *) echo get.lua ;; esac; }

for e in $endpoints; do
    for run in $(seq 1 "$RUNS"); do
        RUN_ID="one-$e-$run-$RANDOM" wrk -t2 -c64 -d"${DURATION}s" -s "bench/$(script_of "$e")" "$base_a$(path_of "$e")" > "$work/one.txt"
        one[$e]+="$(rps "$work/one.txt") "
    done
done

read -r pid_b base_b <<< "$(node)"
pids+=("$pid_b")
hz=$(getconf CLK_TCK)
for e in $endpoints; do
    for run in $(seq 1 "$RUNS"); do
        ta=$(cpu_ticks "$pid_a"); tb=$(cpu_ticks "$pid_b")
        RUN_ID="a-$e-$run-$RANDOM" wrk -t1 -c32 -d"${DURATION}s" -s "bench/$(script_of "$e")" "$base_a$(path_of "$e")" > "$work/a.txt" &
        RUN_ID="b-$e-$run-$RANDOM" wrk -t1 -c32 -d"${DURATION}s" -s "bench/$(script_of "$e")" "$base_b$(path_of "$e")" > "$work/b.txt"
        wait
        two[$e]+="$(python3 -c "print($(rps "$work/a.txt") + $(rps "$work/b.txt"))") "
        cpu_a[$e]+="$(python3 -c "print(($(cpu_ticks "$pid_a") - $ta) / $hz / $DURATION)") "
        cpu_b[$e]+="$(python3 -c "print(($(cpu_ticks "$pid_b") - $tb) / $hz / $DURATION)") "
    done
done

echo
echo "== One node vs two on one PostgreSQL: 64 connections in all, demo + 10,000 orgs x 20 members, medians of $RUNS =="
printf '%-9s %12s %13s %7s %14s %14s\n' endpoint "1 node req/s" "2 nodes req/s" ratio "node a cores" "node b cores"
for e in $endpoints; do
    python3 - "$e" "${one[$e]}" "${two[$e]}" "${cpu_a[$e]}" "${cpu_b[$e]}" << 'PY'
import statistics, sys
e, one, two, ca, cb = sys.argv[1], *[[float(x) for x in a.split()] for a in sys.argv[2:]]
m = statistics.median
print(f"{e:<9} {m(one):>12.0f} {m(two):>13.0f} {m(two) / m(one):>7.2f} {m(ca):>14.2f} {m(cb):>14.2f}")
PY
done
