#!/usr/bin/env bash
# Times GET /api/v1/fleet/summary (which now counts every agent's condition from memory)
# against GET /api/v1/channels in the same coordinator, with N enrolled simulated updaters
# over mutual TLS: off a rollout, then with a rollout governing every agent.
set -euo pipefail
n=${1:-10000}
R="$(cd "$(dirname "$0")/../.." && pwd)/target/release"
d=$(mktemp -d)
${COORD:-$R/drover-coordinator} --database "sqlite://$d/db" --grpc-listen 127.0.0.1:7500 --http-listen 127.0.0.1:7501 \
  --control-plane-version 2.0.0 --data-dir "$d/data" --ready-file "$d/ready.json" --heartbeat-secs 30 >"$d/c.log" 2>&1 &
cpid=$!
spid=
trap 'kill $cpid $spid 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do [ -f "$d/ready.json" ] && break; sleep 0.1; done
export DROVER_PROFILE="$d/data/admin-profile.json"
ctl() { $R/droverctl "$@"; }
ctl channels set edge 1.0.0 >/dev/null
secret=$(ctl tokens create --ttl 1h --uses "$n" --group dev --group staging --group prod -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["secret"])')
DROVER_JOIN_TOKEN=$secret $R/drover-updater simulate --coordinator https://127.0.0.1:7500 --ca-file "$d/data/tls/ca.pem" \
  --identity-dir "$d/ids" --count "$n" --channel edge --groups dev,staging,prod --versions 1.0.0 --id-prefix m \
  --recheck-secs 3600 >"$d/sim.log" 2>&1 &
spid=$!
for _ in $(seq 600); do
  c=$(ctl fleet summary -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["connected_agents"])')
  [ "$c" -ge "$n" ] && break; sleep 2
done
echo "connected: $c"
token=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["credentials"]["token"])' "$DROVER_PROFILE")
times() {
  for _ in $(seq 60); do
    curl -s -o /dev/null -w '%{time_total}\n' --cacert "$d/data/tls/ca.pem" -H "authorization: Bearer $token" "https://127.0.0.1:7501$1"
  done | sort -n | awk '{a[NR]=$1} END {printf "p50 %.1f ms, p90 %.1f ms, max %.1f ms\n", a[int(NR*0.5)]*1000, a[int(NR*0.9)]*1000, a[NR]*1000}'
}
round() {
  echo "$1: summary $(times /api/v1/fleet/summary); channels (baseline) $(times /api/v1/channels)"
}
round "off a rollout"
hour=$(( ($(date -u +%-H) + 3) % 24 ))
ctl rollout create --channel edge --from 1.0.0 --to 1.1.0 --group "dev:start=$hour,window=1" --group staging --group prod >/dev/null
sleep 3
round "a rollout governs all $n"
ctl fleet summary | head -2
