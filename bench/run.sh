#!/usr/bin/env bash
# The load benchmark: Plinth (release, fresh database seeded with the demo and
# 10,000 orgs of 20 members) against a ceiling server answering the same paths with
# the same bodies and no auth or database, both driven by wrk at 64 connections on
# this machine. Prints requests/s, p50/p99 latency and errors per endpoint, each
# endpoint's ratio to the ceiling (measured in the same run), peak RSS and start-up
# time; then the scale checks (100 vs 10,000 orgs, 1,000,000 audit rows).
#
#   bench/run.sh                      # 3 runs of 10 s per endpoint
#   RUNS=1 DURATION=5 bench/run.sh    # quicker
#   SCALE=0 bench/run.sh              # skip the scale checks
#   ENGINE=postgres bench/run.sh      # on PostgreSQL: a throwaway cluster on this
#                                     # machine (synchronous_commit=off, the match
#                                     # of SQLite's synchronous=NORMAL in WAL mode);
#                                     # the scale checks are SQLite's
#   bench/engines.sh                  # both engines, one after the other
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
SCALE=${SCALE:-1}
ENGINE=${ENGINE:-sqlite}
[ "$ENGINE" = sqlite ] || SCALE=0

# wrk, the release build, a work folder, PostgreSQL when ENGINE=postgres,
# new_db, db_scalar, free_port (shared with bench/nodes.sh).
. bench/lib.sh

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# Starts plinth on database $1 (a URL); sets base, pid, startup_ms.
start_plinth() {
    local db=$1 port
    port=$(free_port)
    base="http://127.0.0.1:$port"
    local t0 t1
    t0=$(date +%s%N)
    DATABASE_URL="$db" PLINTH_LOG=warn PLINTH_ADDR="127.0.0.1:$port" \
        PLINTH_AUTH_RATE_PER_IP=100000 PLINTH_AUTH_RATE_PER_ACCOUNT=100000 \
        "$bin" serve > "$work/server-$port.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    until curl -sf "$base/readyz" > /dev/null 2>&1; do sleep 0.002; done
    t1=$(date +%s%N)
    startup_ms=$(( (t1 - t0) / 1000000 ))
}

login() {
    curl -sf -X POST "$base/api/auth/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"demo-password-1\"}" | json_field 'd["access_token"]'
}

seed() {
    local db=$1 orgs=$2 t0 t1
    t0=$(date +%s%N)
    DATABASE_URL="$db" PLINTH_LOG=warn "$bin" seed --demo --orgs "$orgs" --members 20 > /dev/null
    t1=$(date +%s%N)
    echo "seeded $orgs orgs x 20 members in $(( (t1 - t0) / 1000000 )) ms" >&2
}

# --- throughput against the ceiling ------------------------------------------------
db=$(new_db bench)
seed "$db" 10000
start_plinth "$db"
plinth_pid=$pid
startups=("$startup_ms")
export TOKEN
TOKEN=$(login member@acme.test)
org=$(curl -sf "$base/api/orgs" -H "authorization: Bearer $TOKEN" | json_field 'd["items"][0]["id"]')
export PATH_MEMBERS="/api/orgs/$org/members" PATH_FLAGS="/api/orgs/$org/flags" PATH_USAGE="/api/orgs/$org/usage"

# The ceiling answers with the very bodies Plinth returns.
python3 - "$base" "$org" "$TOKEN" > "$work/bodies.json" << 'PY'
import json, sys, urllib.request
base, org, token = sys.argv[1:]
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=body,
        headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    return urllib.request.urlopen(req).read().decode()
print(json.dumps({
    "me": call("GET", "/api/auth/me"),
    "members": call("GET", f"/api/orgs/{org}/members"),
    "flags": call("GET", f"/api/orgs/{org}/flags"),
    "usage": call("POST", f"/api/orgs/{org}/usage",
                  b'{"metric":"bench_events","quantity":1,"idempotency_key":"bodies"}'),
}))
PY
ceiling_port=$(free_port)
target/release/ceiling "127.0.0.1:$ceiling_port" "$work/bodies.json" &
pids+=("$!")
ceiling="http://127.0.0.1:$ceiling_port"
until curl -sf -o /dev/null "$ceiling/api/auth/me"; do sleep 0.01; done

wrk_run() { # name target script path outfile
    RUN_ID="$1-$run-$RANDOM" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "bench/$3" "$2$4" > "$5"
}

results="{"
for endpoint in me members flags usage mixed; do
    case $endpoint in
        me) script=get.lua; path=/api/auth/me ;;
        members) script=get.lua; path=$PATH_MEMBERS ;;
        flags) script=get.lua; path=$PATH_FLAGS ;;
        usage) script=usage.lua; path=$PATH_USAGE ;;
        mixed) script=mixed.lua; path=/ ;;
    esac
    p_files=""; c_files=""
    for run in $(seq 1 "$RUNS"); do
        wrk_run "$endpoint" "$base" "$script" "$path" "$work/$endpoint-plinth-$run.txt"
        wrk_run "$endpoint" "$ceiling" "$script" "$path" "$work/$endpoint-ceiling-$run.txt"
        p_files+="\"$work/$endpoint-plinth-$run.txt\","
        c_files+="\"$work/$endpoint-ceiling-$run.txt\","
    done
    results+="\"$endpoint\": {\"plinth\": [${p_files%,}], \"ceiling\": [${c_files%,}]},"
done
echo "${results%,}}" > "$work/results.json"
peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$plinth_pid/status")
stored=$(db_scalar "$db" "SELECT count(*) FROM tenant_usage_events WHERE metric = 'bench_events'")
# Answered 201 to wrk, plus the one request that fetched the ceiling's body.
acknowledged=$(cat "$work"/usage-plinth-*.txt | awk '/^acknowledged:/ {n += $2} END {print n + 1}')
kill "$plinth_pid"; wait "$plinth_pid" 2> /dev/null || true

# Start-up: two more cold starts on the same (migrated, seeded) database.
for _ in 1 2; do
    start_plinth "$db"; startups+=("$startup_ms"); kill "$pid"; wait "$pid" 2> /dev/null || true
done

echo
echo "== Plinth on $ENGINE vs the ceiling: wrk -t$THREADS -c$CONNS -d${DURATION}s, demo + 10,000 orgs x 20 members =="
python3 bench/report.py "$work/results.json"
echo "usage writes acknowledged (201, usage runs): $acknowledged; stored afterwards: $stored"
echo "peak RSS of the server: $(( peak_rss_kb / 1024 )) MiB"
echo "start-up to a ready /readyz: $(printf '%s\n' "${startups[@]}" | sort -n | sed -n 2p) ms (median of 3: ${startups[*]})"
if [ "$stored" -lt "$acknowledged" ]; then echo "LOST: $(( acknowledged - stored )) acknowledged usage writes are not in the database" >&2; exit 1; fi

[ "$SCALE" = 1 ] || exit 0

# --- scale: the same reads with 100 and with 10,000 orgs; audit with 1,000,000 rows --
p50_of() { # path token -> p50 ms
    TOKEN=$2 wrk -t1 -c8 -d3s --latency -s bench/get.lua "$base$1" > "$work/scale.txt"
    python3 -c "import sys; sys.path.insert(0, 'bench'); import report; print(report.parse('$work/scale.txt')['p50'])"
}
measure() { # db -> "members activity audit"
    start_plinth "$1"
    local member staff org
    member=$(login member@acme.test); staff=$(login staff@plinth.test)
    org=$(curl -sf "$base/api/orgs" -H "authorization: Bearer $member" | json_field 'd["items"][0]["id"]')
    echo "$(p50_of "/api/orgs/$org/members" "$member") $(p50_of "/api/orgs/$org/activity" "$member") $(p50_of "/api/admin/audit-logs?limit=50&action=auth.login" "$staff")"
    kill "$pid"; wait "$pid" 2> /dev/null || true
}
# N audit rows, as the audit log of a busy instance (time-ordered ids in
# the past, a mix of actions; the hash chain is not verified here).
fill_audit() { # db rows
python3 - "$1" "$2" << 'PY'
import random, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
seq = db.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()[0]
actions = ["auth.login", "auth.login_failed", "org.updated", "member.added", "invitation.created",
           "subscription.changed", "auth.logout", "auth.refresh_reuse"]
start_ms = int(time.time() * 1000) - 90 * 86400 * 1000
def rows():
    for i in range(int(sys.argv[2])):
        ms = start_ms + i * 7
        rnd = random.getrandbits(74)
        hexid = f"{ms:012x}7{rnd >> 62 & 0xfff:03x}{0x8000 | (rnd >> 48 & 0x3fff):04x}{rnd & 0xffffffffffff:012x}"
        uid = f"{hexid[:8]}-{hexid[8:12]}-{hexid[12:16]}-{hexid[16:20]}-{hexid[20:]}"
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
        yield (uid, at, actions[i % len(actions)], "{}", seq + 1 + i, "0" * 64, "0" * 64)
db.executemany("INSERT INTO audit_log (id, at, action, details, seq, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
db.commit()
PY
}
small=$(new_db small)
seed "$small" 100
fill_audit "${small#sqlite://}" 1000
read -r m_small a_small au_small <<< "$(measure "$small")"
au_small_rows=$(db_scalar "$small" "SELECT count(*) FROM audit_log")
read -r m_big a_big au_big <<< "$(measure "$db")"
fill_audit "${db#sqlite://}" 1000000
read -r _ _ au_million <<< "$(measure "$db")"
echo
echo "== Scale (p50 ms; ratio = large / small) =="
python3 -c "
m=($m_small,$m_big); a=($a_small,$a_big)
print(f'members list   100 orgs {m[0]:.2f}  10,000 orgs {m[1]:.2f}  ratio {m[1]/m[0]:.2f}')
print(f'activity list  100 orgs {a[0]:.2f}  10,000 orgs {a[1]:.2f}  ratio {a[1]/a[0]:.2f}')
u=($au_small,$au_million)
print(f'audit query      {$au_small_rows} rows {u[0]:.2f}  +1,000,000 rows {u[1]:.2f}  ratio {u[1]/u[0]:.2f}')
"
