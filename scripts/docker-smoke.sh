#!/usr/bin/env bash
# End-to-end smoke test of the offline compose stack (what CI runs):
#
#   scripts/docker-smoke.sh [--bin-dir DIR] [--keep]
#
# Builds the images (scripts/docker-offline.sh; binaries from --bin-dir, default target/debug),
# starts docker-compose.yml + docker-compose.offline.yml under the project name `travelsmoke`
# on 127.0.0.1 ports 25xxx, waits until every service is healthy, then proves:
#   - the topics on the broker are exactly platform::topics (names and partitions);
#   - a row inserted with psql inside the postgres container arrives in topic_cdc_changes,
#     decoded through the schema registry (topic-tail, run inside the network);
#   - an event POSTed to the gateway's published port arrives in topic_app_events;
#   - the simulators' records are in every source topic (app events, clickstream, CDC changes,
#     app logs, external data);
#   - every Prometheus target is up;
#   - every PromQL query of every panel of deploy/grafana/dashboards returns series from the
#     offline Prometheus, and every metric a dashboard names exists in the Rust sources;
# printing `SMOKE OK: ...` for each, then `down -v`. Any failure exits non-zero with the logs of
# the failing service. --keep leaves the stack running (for debugging).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
KEEP=0
OFFLINE_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) KEEP=1; shift ;;
        --bin-dir) OFFLINE_ARGS+=(--bin-dir "$2"); shift 2 ;;
        --bin-dir=*) OFFLINE_ARGS+=("$1"); shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker-smoke: unknown argument $1" >&2; exit 2 ;;
    esac
done

export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-travelsmoke}"
# Short windows so that the processor emits results (and its dashboard panels fill) within the
# smoke's minutes; everything else runs with the stack's defaults, except the OLTP rate below.
export PROCESSOR_APP_EVENTS_WINDOW_SECS="${PROCESSOR_APP_EVENTS_WINDOW_SECS:-10}"
export PROCESSOR_CLICKSTREAM_WINDOW_SECS="${PROCESSOR_CLICKSTREAM_WINDOW_SECS:-10}"
export PROCESSOR_CDC_WINDOW_SECS="${PROCESSOR_CDC_WINDOW_SECS:-10}"
export PROCESSOR_LOGS_WINDOW_SECS="${PROCESSOR_LOGS_WINDOW_SECS:-10}"
# OLTP faster than the seed's 20-30 changes/min, so every table has changes within the smoke.
export WORKLOAD_OLTP_RATE="${WORKLOAD_OLTP_RATE:-20}"
GATEWAY_URL="http://127.0.0.1:${GATEWAY_PORT:-25080}"
PROMETHEUS_URL="http://127.0.0.1:${PROMETHEUS_PORT:-25090}"
REGISTRY_URL="http://127.0.0.1:${SCHEMA_REGISTRY_PORT:-25081}"
READY_TIMEOUT="${SMOKE_READY_TIMEOUT:-240}"
PANEL_TIMEOUT="${SMOKE_PANEL_TIMEOUT:-150}"

# Chosen at each call, not here: on a fresh machine docker-offline.sh (below) installs Compose.
compose_command() {
    if command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        COMPOSE=(docker compose)
    fi
    COMPOSE+=(-f docker-compose.yml -f docker-compose.offline.yml)
}
compose() {
    compose_command
    "${COMPOSE[@]}" "$@"
}

started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started )) s"; }
say() { printf 'docker-smoke: %s\n' "$*"; }
ok() { printf 'SMOKE OK: %s\n' "$*"; }
FAILED_SERVICE=""
fail() { # message [service whose logs matter]
    printf 'SMOKE FAILED: %s\n' "$1" >&2
    FAILED_SERVICE="${2:-}"
    exit 1
}

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "================ docker-smoke failed (exit $rc) after $(elapsed) ================" >&2
        compose ps >&2 || true
        if [ -n "$FAILED_SERVICE" ]; then
            echo "---------------- logs of $FAILED_SERVICE ----------------" >&2
            compose logs --no-color --tail=200 "$FAILED_SERVICE" >&2 || true
        fi
        echo "---------------- last lines of every service ----------------" >&2
        compose logs --no-color --tail=25 >&2 || true
    fi
    if [ "$KEEP" = 1 ]; then
        compose_command
        say "--keep: the stack stays up (stop it with: ${COMPOSE[*]} down -v)"
    else
        say "down -v"
        compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    [ "$rc" -eq 0 ] && say "passed in $(elapsed)"
    exit "$rc"
}

# --- images and a clean start ----------------------------------------------------------------
scripts/docker-offline.sh "${OFFLINE_ARGS[@]+"${OFFLINE_ARGS[@]}"}"
compose down -v --remove-orphans >/dev/null 2>&1 || true
trap on_exit EXIT
say "up -d (project $COMPOSE_PROJECT_NAME)"
up_at=$(date +%s)
if ! compose up -d 2>&1 | sed 's/^/  /'; then
    fail "docker-compose up failed"
fi

# --- every service healthy (topics-init exited 0) --------------------------------------------
SERVICES=(postgres kafka topics-init schema-registry cdc-connector gateway processor workload workload-oltp prometheus)
deadline=$(( $(date +%s) + READY_TIMEOUT ))
while :; do
    pending=()
    for s in "${SERVICES[@]}"; do
        id="$(compose ps -q "$s" 2>/dev/null || true)"
        [ -n "$id" ] || fail "service $s has no container" "$s"
        state="$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}' "$id")"
        read -r status code health restarts <<<"$state"
        # restart: unless-stopped would hide a crash loop until the timeout.
        [ "$restarts" -lt 2 ] || fail "$s keeps crashing (restarted $restarts times, last exit code $code)" "$s"
        if [ "$s" = topics-init ]; then
            if [ "$status" = exited ]; then
                [ "$code" = 0 ] || fail "topics-init exited with $code" topics-init
            else
                pending+=("$s($status)")
            fi
            continue
        fi
        case "$status/$health" in
            running/healthy) ;;
            exited/*|dead/*) fail "$s is $status (exit code $code)" "$s" ;;
            *) pending+=("$s($health)") ;;
        esac
    done
    [ ${#pending[@]} -eq 0 ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        fail "not healthy after ${READY_TIMEOUT}s: ${pending[*]}" "${pending[0]%%(*}"
    fi
    sleep 3
done
ok "every service healthy $(( $(date +%s) - up_at )) s after up: ${SERVICES[*]} (topics-init exited 0); Grafana and Kafka UI are left out offline"

# --- topics: the broker holds exactly platform::topics ---------------------------------------
topics_json="$(compose exec -T kafka tansu topic list --broker tcp://localhost:9092)" \
    || fail "cannot list topics" kafka
python3 - "$REPO/crates/platform/src/topics.rs" "$topics_json" <<'PY' || fail "the broker's topics differ from platform::topics" topics-init
import json, re, sys
src = open(sys.argv[1]).read()
want = {}
for m in re.finditer(r'pub const (\w+): TopicSpec = TopicSpec \{(.*?)\};', src, re.S):
    body = m.group(2)
    name = re.search(r'name:\s*"([^"]+)"', body).group(1)
    want[name] = int(re.search(r'partitions:\s*(\d+)', body).group(1))
have = {t["name"]: len(t["partitions"]) for t in json.loads(sys.argv[2])}
problems = [f"{n}: want {p} partitions, broker has {have.get(n)}" for n, p in sorted(want.items()) if have.get(n) != p]
extra = sorted(set(have) - set(want) - {"__consumer_offsets", "__transaction_state"})
if not want or problems:
    print("\n".join(problems) or "no TopicSpec found in topics.rs", file=sys.stderr)
    sys.exit(1)
print(f"SMOKE OK: the broker holds the {len(want)} topics of platform::topics with their partition counts"
      + (f" (plus {', '.join(extra)})" if extra else ""))
PY

# topic-tail runs inside the compose network (tansu advertises kafka:9092 only); it prints the
# first record whose JSON contains NEEDLE, or nothing within SECS.
tail_topic() { # topic needle secs
    compose exec -T cdc-connector sh -c \
        'timeout "$3" topic-tail --brokers kafka:9092 --schema-registry-url http://schema-registry:8081 \
             --topic "$1" --from-beginning 2>/dev/null | grep -m1 -F -- "$2"; true' \
        sh "$1" "$2" "$3"
}

# --- CDC: psql inside the postgres container -> topic_cdc_changes, decoded via the registry ----
nonce="smoke-$(date +%s)-$RANDOM"
email="$nonce@example.vn"
# The whole output first: `| head -n1` could close the pipe while psql still writes (SIGPIPE,
# a failure under pipefail).
inserted="$(compose exec -T postgres psql -X -q -A -t -v ON_ERROR_STOP=1 -U postgres -d travel \
    -c "INSERT INTO users (email, full_name, country_code) VALUES ('$email', 'Smoke Test', 'VN') RETURNING user_id")" \
    || fail "INSERT with psql failed" postgres
user_id="$(printf '%s\n' "$inserted" | sed -n 1p | tr -d '[:space:]')"
[ -n "$user_id" ] || fail "INSERT returned no user_id" postgres
record="$(tail_topic topic_cdc_changes "$email" 90)"
[ -n "$record" ] || fail "the inserted row ($email) did not reach topic_cdc_changes within 90 s" cdc-connector
python3 - "$record" "$email" "$user_id" <<'PY' || fail "the CDC record of $email is not what was inserted" cdc-connector
import json, sys
r = json.loads(sys.argv[1]); v = r["value"]
assert r["topic"] == "topic_cdc_changes", r["topic"]
assert v["table_name"] == "public.users" and v["operation"] == "INSERT", (v["table_name"], v["operation"])
assert v["after_values"]["email"] == sys.argv[2], v["after_values"]
assert v["primary_key"] == {"user_id": int(sys.argv[3])}, v["primary_key"]
assert r["key"] == 'public.users/{"user_id":%s}' % sys.argv[3], r["key"]
print(f"SMOKE OK: psql INSERT of users.user_id={sys.argv[3]} arrived in topic_cdc_changes as {v['operation']} "
      f"{v['table_name']} change_id={v['change_id']}, decoded through the schema registry")
PY
subjects="$(curl -fsS "$REGISTRY_URL/subjects")" || fail "registry /subjects failed" schema-registry
grep -q '"topic_cdc_changes-value"' <<<"$subjects" || fail "subject topic_cdc_changes-value missing: $subjects" schema-registry
ok "schema registry at $REGISTRY_URL lists topic_cdc_changes-value"

# --- gateway: POST /events/user -> topic_app_events --------------------------------------------
event_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
now_ms="$(( $(date +%s) * 1000 ))"
body="{\"event_id\":\"$event_id\",\"event_type\":\"search\",\"session_id\":\"$nonce\",\"app_type\":\"web\",\"timestamp\":$now_ms,\"user_id\":\"u-smoke\",\"properties\":{\"query\":\"Da Nang\"}}"
code="$(curl -sS -o /tmp/docker-smoke-gateway.$$ -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data "$body" "$GATEWAY_URL/events/user")" || fail "POST $GATEWAY_URL/events/user failed" gateway
answer="$(cat /tmp/docker-smoke-gateway.$$)"; rm -f /tmp/docker-smoke-gateway.$$
[ "$code" = 201 ] || fail "POST /events/user answered $code: $answer" gateway
record="$(tail_topic topic_app_events "$event_id" 60)"
[ -n "$record" ] || fail "event $event_id did not reach topic_app_events within 60 s" gateway
python3 - "$record" "$event_id" <<'PY' || fail "the app event record is not what was posted" gateway
import json, sys
r = json.loads(sys.argv[1]); v = r["value"]
assert r["topic"] == "topic_app_events" and v["event_id"] == sys.argv[2], r
assert v["event_type"] == "search" and v["properties"].get("query") == "Da Nang", v
print(f"SMOKE OK: POST /events/user (201) stored event {sys.argv[2]} in topic_app_events "
      f"(partition {r['partition']}, offset {r['offset']}, source {v.get('source')})")
PY

# --- simulators' records in every source topic -----------------------------------------------
# needle: a string only simulator records carry (their generated fields), so the smoke's own
# records above do not count.
check_source() { # topic needle what
    local rec
    rec="$(tail_topic "$1" "$2" 60)"
    [ -n "$rec" ] || fail "no simulator record in $1 within 60 s (looked for $2)" workload
    ok "$1 holds simulator records ($3): $(printf '%s' "$rec" | cut -c1-150)..."
}
check_source topic_app_events '"source":"MOBILE_APP"' "mobile app journeys via the gateway"
check_source topic_clickstream '"interaction":' "clicks, taps and scrolls via the gateway"
check_source topic_app_logs '"level":' "application logs via the gateway"
check_source topic_external_data '"pipeline":' "external-data pipelines via the gateway"
check_source topic_cdc_changes '"table_name":"public.bookings"' "OLTP workload as travel_app, captured by the connector as role cdc"

# --- Prometheus: every target up ----------------------------------------------------------------
deadline=$(( $(date +%s) + 60 ))
while :; do
    targets="$(curl -fsS "$PROMETHEUS_URL/api/v1/targets?state=active")" || fail "Prometheus API not answering" prometheus
    if report="$(python3 - "$targets" <<'PY'
import json, sys
ts = json.loads(sys.argv[1])["data"]["activeTargets"]
want = {"prometheus", "cdc-connector", "gateway", "processor", "workload", "schema-registry"}
jobs = {t["labels"]["job"] for t in ts}
down = [f'{t["labels"]["job"]} {t["scrapeUrl"]}: {t["health"]} {t.get("lastError", "")}' for t in ts if t["health"] != "up"]
if down or not want <= jobs:
    print("; ".join(down + [f"missing job {j}" for j in sorted(want - jobs)]))
    sys.exit(1)
print(f"{len(ts)} targets up: " + ", ".join(sorted(t["scrapeUrl"] for t in ts)))
PY
)"; then
        ok "Prometheus $report"
        break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "Prometheus targets not all up: $report" prometheus
    sleep 3
done

# --- every dashboard panel's query returns series --------------------------------------------
python3 - "$REPO" "$PROMETHEUS_URL" "$PANEL_TIMEOUT" <<'PY' || fail "dashboard queries without data (see above)" prometheus
import glob, json, os, re, sys, time, urllib.parse, urllib.request
repo, prom, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])

# Every metric a dashboard names must exist in the code (catches typos that `or vector(0)`
# would otherwise hide).
sources = ""
for root, _, files in os.walk(os.path.join(repo, "crates")):
    for f in files:
        if f.endswith(".rs"):
            sources += open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
PREFIXES = ("cdc_", "gateway_", "processor_", "workload_", "schema_registry_", "kafka_client_")

queries = []  # (dashboard, panel, expr)
for path in sorted(glob.glob(os.path.join(repo, "deploy/grafana/dashboards/*.json"))):
    d = json.load(open(path))
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(d["panels"]):
        for t in p.get("targets", []):
            expr = t.get("expr")
            if not expr:
                continue
            # Grafana's built-in intervals, then the dashboard's variables (All = their allValue).
            e = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
            e = e.replace("$__interval", "15s").replace("$__range", "5m")
            for name, v in variables.items():
                value = v.get("allValue") or ".*"
                e = e.replace("${%s}" % name, value).replace("$" + name, value)
            if "$" in e:
                print(f"unsubstituted variable in {os.path.basename(path)} / {p['title']}: {e}")
                sys.exit(1)
            queries.append((d["title"], p["title"], e))
            for metric in set(re.findall(r"\b([a-z_]+)\b", e)):
                if metric.startswith(PREFIXES):
                    base = re.sub(r"_(bucket|sum|count)$", "", metric)
                    if f'"{base}"' not in sources and f'"{metric}"' not in sources:
                        print(f"{d['title']} / {p['title']}: metric {metric} does not exist in crates/")
                        sys.exit(1)

def query(e):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": e})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(body)
    return body["data"]["result"]

deadline = time.time() + timeout
pending = list(queries)
while True:
    still = []
    for q in pending:
        try:
            if not query(q[2]):
                still.append((q, "no series"))
        except Exception as err:  # a PromQL error is final
            print(f"query error in {q[0]} / {q[1]}: {q[2]}\n  {err}")
            sys.exit(1)
    if not still:
        break
    if time.time() >= deadline:
        for (dash, panel, e), why in still:
            print(f"{why}: {dash} / {panel}: {e}")
        sys.exit(1)
    pending = [q for q, _ in still]
    time.sleep(5)
# Counters that only appear at their first increment (errors, late events, ...) have no series
# yet on a healthy stack; their panels show 0 through `or vector(0)`. Say which.
names = set(json.load(urllib.request.urlopen(prom + "/api/v1/label/__name__/values", timeout=10))["data"])
named = set()
for _, _, e in queries:
    for metric in re.findall(r"\b([a-z_]+)\b", e):
        if metric.startswith(PREFIXES):
            named.add(metric)
absent = sorted(m for m in named if m not in names)
if absent:
    print("SMOKE NOTE: metrics the dashboards use that have no series yet (their panels show 0 via "
          "`or vector(0)`): " + ", ".join(absent))
dashboards = sorted({q[0] for q in queries})
panels_n = len({(q[0], q[1]) for q in queries})
print(f"SMOKE OK: all {len(queries)} PromQL queries of {panels_n} panels in {len(dashboards)} dashboards "
      f"({', '.join(dashboards)}) return series from the offline Prometheus")
PY

ok "end to end in $(elapsed)"
