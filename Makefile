# shopstream — `make run` starts the embedded stack and shows it working;
# `make test` installs what the tests need and runs them all.
SHELL := bash
GO ?= go
BIN := $(CURDIR)/bin
TEMPORAL_CLI_VERSION := v1.5.1
export TEMPORAL_CLI := $(BIN)/temporal
HELM_VERSION := v3.22.0
export HELM := $(BIN)/helm
GO_SOURCES := $(shell find . -path ./.data -prune -o \( -name '*.go' -o -name '*.avsc' -o -name '*.sql' -o -name '*.json' \) -print) go.mod go.sum

.PHONY: build run dev test test-deps bench bootstrap temporal helm postgres clean \
        create-topics create-connectors ksqldb-migration docker-compose promtool up down \
        bench-scaleout chaos fuzz

build: $(BIN)/shopstream

$(BIN)/shopstream: $(GO_SOURCES)
	$(GO) build -o $@ ./cli

# The Temporal CLI carries the dev server and its Web UI. Later tags than
# v1.5.1 carry replace directives and refuse `go install`. A cold build takes
# several minutes; it is built once into ./bin.
temporal: $(BIN)/temporal
$(BIN)/temporal:
	@echo "building the Temporal CLI $(TEMPORAL_CLI_VERSION) into ./bin (a cold build takes 4-10 minutes)"
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

# Helm renders and lints the chart in environment/helm (its tests need no
# cluster). Built once into ./bin like the Temporal CLI, about 2 minutes cold.
helm: $(BIN)/helm
$(BIN)/helm:
	@echo "building Helm $(HELM_VERSION) into ./bin (a cold build takes about 2 minutes)"
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# Build, start the embedded stack, bootstrap it and show the pipeline working;
# the stack keeps running until Ctrl-C (or stops after the demo with CI=true).
run: build temporal
	@scripts/run.sh

dev: build temporal
	$(BIN)/shopstream dev

bootstrap create-topics: build
	$(BIN)/shopstream bootstrap $(if $(filter create-topics,$@),--only topics)
create-connectors: build
	$(BIN)/shopstream bootstrap --only connectors
ksqldb-migration: build
	$(BIN)/shopstream bootstrap --only ksql

# PostgreSQL's server programs for the sink's tests and the dev stack; Debian
# does not start a server on install, the tests start their own.
postgres:
	@scripts/ensure-postgres.sh

# Debian's docker-compose validates environment/compose.yaml in the tests.
docker-compose:
	@scripts/ensure-docker-compose.sh

# Prometheus' promtool checks and unit-tests the alert rules in dashboards/.
promtool:
	@scripts/ensure-promtool.sh

test-deps: temporal postgres docker-compose promtool helm

# The full external stack (environment/compose.yaml); credentials come from
# environment/.env (copy environment/.env.example). PROFILES= starts the core
# alone. Uses the compose plugin when present, else docker-compose.
PROFILES ?= app connect ksql observability tools
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
up:
	@test -f environment/.env || { echo "environment/.env is missing: cp environment/.env.example environment/.env and set the passwords"; exit 2; }
	$(COMPOSE) -f environment/compose.yaml $(foreach p,$(PROFILES),--profile $(p)) up -d --build
down:
	$(COMPOSE) -f environment/compose.yaml $(foreach p,app connect ksql observability tools,--profile $(p)) down

# The chart's tests are a module of their own (environment/helm/render_test.go
# says why), so ./... does not reach them.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...
	cd environment/helm && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m ./...

# The fault suite: SEEDS seeded schedules of faults over the whole pipeline
# (make test runs 30), or one replayed with SEED=17. See internal/chaos.
SEEDS ?= 50
chaos: temporal postgres
	@SEEDS=$(SEEDS) SEED=$(SEED) GO=$(GO) scripts/chaos.sh

bench: build temporal
	$(GO) test -run '^$$' -bench . -benchmem ./...

# 1, 2, then 3 `shopstream streamer` processes joining one group during a
# 1M-product run on 12 partitions: records/s, rebalance pauses, partitions
# moved, and the output checked for loss and duplicates.
bench-scaleout:
	$(GO) test ./streamer -run '^$$' -bench ScaleOut -benchtime 3x -timeout 20m

# The SSRF guard's fuzz targets, longer than `make test`, which runs their
# seed corpora and the table of address forms only.
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./internal/imagefetch -run '^$$' -fuzz FuzzAddressForms -fuzztime $(FUZZTIME)
	$(GO) test ./internal/imagefetch -run '^$$' -fuzz FuzzHostReason -fuzztime $(FUZZTIME)

bench-emulate: temporal
	$(GO) test ./cli -run '^$$' -bench EmulateVsRaw -benchtime 1x

clean:
	rm -rf $(BIN) .data
