#!/usr/bin/env bash
# Starts a 3-voter baton cluster on 127.0.0.1:7421-7423 from
# packaging/examples/cp-{1,2,3}.toml, takes and hands over a reboot lease
# with the CLI, shows a leader failover, and stops everything it started.
#
#   tests/demo-cluster.sh          # run the walk-through, then stop
#   tests/demo-cluster.sh --keep   # leave the cluster running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
[[ "${1:-}" == "--keep" ]] && keep=true

cargo build --quiet --bin baton
baton=target/debug/baton
state=/tmp/baton-demo
rm -rf "$state"
mkdir -p "$state"

# Mutual TLS, as a real cluster runs: a CA, a voter certificate per voter
# (for its address), and an admin certificate for the CLI below.
"$baton" cert init --dir "$state/tls" >/dev/null
for i in 1 2 3; do
  "$baton" cert issue "cp-$i" --role voter --address 127.0.0.1 --dir "$state/tls" >/dev/null
done
"$baton" cert issue ops --role admin --dir "$state/tls" >/dev/null
admin=(--ca "$state/tls/ca.crt" --cert "$state/tls/ops.crt" --key "$state/tls/ops.key")

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

start_voter() {
  local i=$1
  "$baton" agent --config "packaging/examples/cp-$i.toml" 2>"$state/cp-$i.log" &
  pids[$i]=$!
}

for i in 1 2 3; do start_voter "$i"; done
cli() { echo "\$ baton $*" >&2; "$baton" --endpoint 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 "${admin[@]}" "$@"; }

echo "waiting for a leader..."
for _ in $(seq 1 100); do
  if "$baton" --endpoint 127.0.0.1:7421 "${admin[@]}" status --json 2>/dev/null | grep -q '"leader":[0-9]'; then break; fi
  sleep 0.1
done
cli status

echo; echo "== host-a takes the lease of group 'workers' (prints its fencing token)"
cli lease acquire workers --holder host-a
echo; echo "== host-b asks too and is queued (exit code 75)"
cli lease acquire workers --holder host-b || echo "(exit $?)"
cli status

echo; echo "== host-b waits in the background; host-a releases; host-b is granted at once"
cli lease acquire workers --holder host-b --wait --timeout 20s &
waiter=$!
sleep 0.5
cli lease release workers --holder host-a
wait "$waiter"
cli status

leader=$("$baton" --endpoint 127.0.0.1:7421,127.0.0.1:7422 "${admin[@]}" status --json | sed -n 's/.*"leader":\([0-9]*\).*/\1/p')
echo; echo "== kill -9 of the leader (voter $leader): the lease survives"
kill -9 "${pids[$leader]}"
wait "${pids[$leader]}" 2>/dev/null || true
sleep 1.5
cli status
echo; echo "== voter $leader restarts from its state on disk and rejoins"
start_voter "$leader"
sleep 1.5
cli status
cli lease release workers --holder host-b

if $keep; then
  echo; echo "cluster running on 127.0.0.1:7421-7423; try: $baton --config packaging/examples/cp-1.toml status"
  echo "Ctrl-C stops it."
  wait
fi
