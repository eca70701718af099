# readthrough: the commands a newcomer needs. See README.md.
GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 10s
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run run-stdlib run-proxy test unit integration lint bench fuzz

# Start examples/chi on 127.0.0.1:8080 with an embedded Redis (REDIS_URL for a real one).
run:
	$(GO) run ./examples/chi

run-stdlib:
	$(GO) run ./examples/stdlib

# A caching reverse proxy in standards mode (UPSTREAM=http://host:port for your service).
run-proxy:
	$(GO) run ./examples/reverseproxy

# Every test: vet, the race detector, unit, example and integration tests
# (integration starts its own redis-server processes).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration:
	$(GO) test -race -count=1 -v -timeout 9m ./integration/...

lint:
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# Benchmarks and long measurements (hit throughput ratio, Redis memory per
# response, stampede and expiry figures) against real redis-server processes.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s -timeout 30m $(PKGS)

# A short run of every fuzz target.
fuzz:
	./.ci/fuzz $(FUZZTIME)
