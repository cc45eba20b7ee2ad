#!/usr/bin/env bash
# The schema's compatibility and the server's standard gRPC surfaces, checked with the real
# tools (each installed from the Go module proxy at a pinned version into target/go-tools):
#  - buf lint on proto/, and buf breaking against the previous commit (local only, no plugins);
#  - grpcurl through server reflection against a real intentkitd --sandbox: list, describe, a
#    deposit created and read back, and a call without a token refused;
#  - grpc-health-probe against the standard health service;
#  - the simulators' walkthrough in docs/guide/simulator.md, run as written.
# Called by scripts/test.sh with INTENTKITD set to the binary every suite shares.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=v1.75.0
GRPCURL=v1.9.4
HEALTH_PROBE=v0.4.62
tools="$PWD/target/go-tools"
mkdir -p "$tools"
install() { # install NAME MODULE@VERSION
  local stamp="$tools/.$1.version"
  if [ ! -x "$tools/$1" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$2" ]; then
    GOBIN="$tools" go install "$2"
    echo "$2" >"$stamp"
  fi
}
install buf "github.com/bufbuild/buf/cmd/buf@$BUF"
install grpcurl "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL"
install grpc-health-probe "github.com/grpc-ecosystem/grpc-health-probe@$HEALTH_PROBE"
passed=0
ok() { passed=$((passed + 1)); echo "  ok: $1"; }

echo "== buf"
"$tools/buf" lint proto
ok "buf lint"
if git rev-parse -q --verify HEAD~1 >/dev/null; then
  "$tools/buf" breaking proto --against '.git#ref=HEAD~1,subdir=proto'
  ok "buf breaking against HEAD~1 ($(git rev-parse --short HEAD~1))"
else
  echo "buf breaking: no previous commit in this clone (shallow?); fetch one to compare" >&2
  exit 1
fi

echo "== grpcurl and grpc-health-probe against intentkitd --sandbox"
intentkitd=${INTENTKITD:-$PWD/target/debug/intentkitd}
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
INTENTKIT_SERVER_GRPC_ADDR=127.0.0.1:0 INTENTKIT_SERVER_HTTP_ADDR=127.0.0.1:0 \
  INTENTKIT_SERVER_METRICS_ADDR= INTENTKIT_SANDBOX_PIENTEGRA_ADDR=127.0.0.1:0 \
  INTENTKIT_SANDBOX_DECENTRO_ADDR=127.0.0.1:0 \
  "$intentkitd" --sandbox --data-dir "$work/data" >"$work/out.txt" 2>"$work/err.txt" &
pid=$!
for _ in $(seq 300); do grep -q "StreamEvents" "$work/out.txt" && break; sleep 0.1; done
addr=$(sed -n 's/^ *gRPC *\([^ ]*\).*/\1/p' "$work/out.txt")
[ -n "$addr" ] || { cat "$work/out.txt" "$work/err.txt"; echo "intentkitd did not start" >&2; exit 1; }
grpcurl=("$tools/grpcurl" -plaintext -max-time 10)
auth=(-H "authorization: Bearer sandbox-token")

services=$("${grpcurl[@]}" "$addr" list)
for s in intentkit.v1.IntentService grpc.health.v1.Health grpc.reflection.v1.ServerReflection; do
  grep -qx "$s" <<<"$services" || { echo "reflection does not list $s: $services" >&2; exit 1; }
done
ok "grpcurl list (reflection)"
"${grpcurl[@]}" "$addr" describe intentkit.v1.IntentService.CreateDeposit | grep -q "rpc CreateDeposit"
ok "grpcurl describe"
key="grpcurl-$(date +%s%N)"
created=$("${grpcurl[@]}" "${auth[@]}" -d "{\"idempotencyKey\":\"$key\",\"account\":\"tr-sandbox\",\"amountMinor\":\"150000\",\"currency\":\"TRY\",\"reference\":\"$key\",\"userId\":\"u1\"}" \
  "$addr" intentkit.v1.IntentService/CreateDeposit)
grep -q '"status": "INTENT_STATUS_PENDING"' <<<"$created" || { echo "$created" >&2; exit 1; }
id=$(sed -n 's/^  "id": "\([^"]*\)".*/\1/p' <<<"$created")
"${grpcurl[@]}" "${auth[@]}" -d "{\"id\":\"$id\"}" "$addr" intentkit.v1.IntentService/GetIntent | grep -q "\"idempotencyKey\": \"$key\""
ok "grpcurl CreateDeposit then GetIntent $id"
if "${grpcurl[@]}" -d "{\"id\":\"$id\"}" "$addr" intentkit.v1.IntentService/GetIntent >"$work/anon.txt" 2>&1; then
  echo "a call without a token was served" >&2; exit 1
fi
grep -q "Code: Unauthenticated" "$work/anon.txt" || { cat "$work/anon.txt" >&2; exit 1; }
ok "grpcurl without a token: Unauthenticated"

"$tools/grpc-health-probe" -addr="$addr" -connect-timeout 5s -rpc-timeout 5s 2>&1 | grep -q "status: SERVING"
ok "grpc-health-probe (server)"
"$tools/grpc-health-probe" -addr="$addr" -service intentkit.v1.IntentService -rpc-timeout 5s 2>&1 | grep -q "status: SERVING"
ok "grpc-health-probe -service intentkit.v1.IntentService"
if "$tools/grpc-health-probe" -addr="$addr" -service no.such.Service -rpc-timeout 5s >/dev/null 2>&1; then
  echo "health reported an unknown service as serving" >&2; exit 1
fi
ok "grpc-health-probe on an unknown service fails"
# The simulators' walkthrough (docs/guide/simulator.md), run as written against this sandbox
# (its addresses in place of the defaults), without its last, endless StreamEvents line: every
# outcome it drives must reach the outbox.
p_root=$(sed -n 's/^ *simulators *pientegra \(http:[^ ]*\)\/api\/v1.*/\1/p' "$work/out.txt")
awk '/^```sh$/{on=1; next} /^```$/{on=0} on' docs/guide/simulator.md | grep -v StreamEvents \
  | sed -e "s#127.0.0.1:50051#$addr#g" -e "s#http://127.0.0.1:8701#$p_root#g" \
  | sed -e "s#^grpcurl #$tools/grpcurl #" -e "s#grpcurl -plaintext#$tools/grpcurl -plaintext#g" >"$work/walkthrough.sh"
grep -q "late-arrival" "$work/walkthrough.sh" || { echo "no walkthrough in docs/guide/simulator.md" >&2; exit 1; }
(cd "$work" && bash -e walkthrough.sh >/dev/null 2>&1) || { cat -n "$work/walkthrough.sh"; echo "the walkthrough failed" >&2; exit 1; }
want="intent.approved intent.rejected intent.expired intent.late_arrival"
for _ in $(seq 100); do
  types=$("${grpcurl[@]}" "${auth[@]}" -d '{"consumer":"walkthrough","afterSeq":"0","limit":500}' \
    "$addr" intentkit.v1.IntentService/ListEvents 2>/dev/null | sed -n 's/.*"typeName": "\([^"]*\)".*/\1/p' | sort -u | tr '\n' ' ' || true)
  missing=""
  for t in $want; do case " $types " in *" $t "*) ;; *) missing="$missing $t" ;; esac; done
  [ -z "$missing" ] && break
  sleep 0.1
done
[ -z "$missing" ] || { echo "the walkthrough's outcomes did not all arrive; missing:$missing" >&2; exit 1; }
ok "docs/guide/simulator.md walkthrough: every outcome reached the outbox"
echo "grpc tools: $passed passed, 0 failed"
