# pgoutbox — developer entry points. Run `make help` for the list.
#
# Services (PostgreSQL from Debian's packages, Apache Kafka from Maven Central) are installed
# and run by deploy/local/*.sh; their state lives in $(PGOUTBOX_STATE_DIR), outside the repo.

export PGOUTBOX_STATE_DIR ?= $(HOME)/.cache/pgoutbox
export PGOUTBOX_PG_PORT ?= 55432
export PGOUTBOX_KAFKA_PORT ?= 59092

GO ?= go
GOLANGCI_LINT_VERSION := v2.15.0
BIN := bin/pgoutbox

.PHONY: help up down env build test test-cluster unit lint demo bench bench-fanout clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

up: ## install what is missing, start PostgreSQL, Kafka and Centrifugo, print the addresses as KEY=value (PGOUTBOX_TOPOLOGY=cluster: 3 brokers, Redis, 2 Centrifugo nodes, haproxy)
	@deploy/local/services.sh up

down: ## stop PostgreSQL, Kafka and Centrifugo, leaving no process behind (PGOUTBOX_TOPOLOGY=cluster: the cluster's nodes)
	@deploy/local/services.sh down

env: ## print the addresses of the services as KEY=value lines, starting nothing
	@deploy/local/services.sh env

build: ## build bin/pgoutbox
	$(GO) build -o $(BIN) ./cmd/pgoutbox

test: lint ## make lint, then unit + integration tests with -race (starts the services it needs, stops what it started)
	@deploy/local/services.sh test

test-cluster: ## fault tests on the cluster topology: broker and Centrifugo node kills, Redis restart, relay kills (starts the cluster if needed)
	@deploy/local/services.sh test-cluster

unit: ## unit tests only, no services
	$(GO) test -race -count=1 ./...

# --allow-serial-runners: a second golangci-lint on the machine (another checkout) waits for the
# first instead of failing.
lint: ## gofmt, go vet and a pinned golangci-lint (depguard keeps each driver in its package)
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags cluster ./integration/cluster/
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run --allow-serial-runners ./...

clean: ## remove build output (not the services' state)
	rm -rf bin

demo: ## the whole pipeline live in a browser: services, setup, relay and a shared task board at http://127.0.0.1:8080/ (PGOUTBOX_DEMO_PORT; Ctrl-C stops)
	@deploy/local/demo.sh

bench: ## throughput, latency and memory of the relay next to pg_recvlogical, a bare Kafka producer and Debezium; commit→subscriber end to end next to Centrifugo's PostgreSQL paths and Debezium; the live models' property test over 100 seeds (MODELS_SEEDS) and their confirmation latency (QUICK=1: shorter)
	@deploy/local/services.sh up >/dev/null
	$(GO) run ./cmd/pgoutbox-bench $(if $(QUICK),--quick) $(BENCH_FLAGS)
	@deploy/local/models-bench.sh $(if $(QUICK),5,$(or $(MODELS_SEEDS),100))
	@$(MAKE) --no-print-directory bench-fanout

bench-fanout: ## the fan-out load: 10,000 WebSocket subscribers at 10,000 deliveries/s for 5 minutes, single-node and cluster, and a Centrifugo node SIGKILLed mid-run (QUICK=1: 1,000 for 40 s)
	@deploy/local/services.sh up >/dev/null
	@PGOUTBOX_TOPOLOGY=cluster deploy/local/services.sh up >/dev/null
	$(GO) run ./cmd/pgoutbox-bench-fanout $(if $(QUICK),--quick) $(FANOUT_FLAGS)
