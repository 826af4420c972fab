#!/usr/bin/env bash
# The live models' part of `make bench`: the randomized Chromium property test of
# @pgoutbox/models over many seeds (its anomaly count goes in the report), and the click→confirmed
# latency of optimistic writes at 100 a second. Both are integration/models_property_test.go
# against the local services (`make up`).
#
#   deploy/local/models-bench.sh [seeds]     default 100 (QUICK=1 in make bench: 5)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SEEDS="${1:-100}"
RATE="${PGOUTBOX_MODELS_LATENCY_RATE:-100}"

export PGOUTBOX_TEST_DATABASE_URL="${PGOUTBOX_TEST_DATABASE_URL:-$("$HERE/postgres.sh" url)}"
export PGOUTBOX_TEST_KAFKA_BROKERS="${PGOUTBOX_TEST_KAFKA_BROKERS:-127.0.0.1:${PGOUTBOX_KAFKA_PORT:-59092}}"
export PGOUTBOX_TEST_CENTRIFUGO_BIN="${PGOUTBOX_TEST_CENTRIFUGO_BIN:-$("$HERE/centrifugo.sh" bin)}"
export CI=true # a missing service is a failure here, not a skip

cd "$ROOT"
run() { go test -count=1 -v -tags integration -timeout 4h -run '^TestModels_Property$' ./integration/ 2>&1 | grep -E '# models|✖|^--- |^(ok|FAIL)' || true; }

echo "== live models: property test, $SEEDS seeds"
PGOUTBOX_MODELS_PROPERTY_SEEDS="$SEEDS" run | grep -v '# seed ' 
echo "== live models: optimistic confirmation latency at $RATE mutations/s"
PGOUTBOX_MODELS_LATENCY_RATE="$RATE" run
