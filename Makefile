# Tollgate's everyday commands. The README names two: make run, make test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: run test bench bench-go callgrind soak faults lint fuzz image build

## run: Tollgate on the embedded store with demo data, ready for grpcurl
run:
	$(GO) run ./cmd/tollgate serve --demo

## test: every test, against real Postgres, Redis, headless Chromium, nginx and Caddy (installed if missing)
test:
	bash .ci/postgres.sh
	bash .ci/redis.sh
	bash .ci/chromium.sh
	bash .ci/proxies.sh
	$(GO) test -count=1 ./...

## bench: load benchmark against the no-op baseline on Postgres (1k–1M tokens) into docs/benchmarks.md; BENCH_QUICK=1 for a smoke run
bench:
	bash .ci/bench.sh

## bench-go: Go benchmarks of the hot path
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## callgrind: instructions per Check, Tollgate next to the no-op, by valgrind (installed if missing); CALLGRIND_N=1000 CALLGRIND_ROUNDS=3
callgrind:
	bash .ci/callgrind.sh

## soak: mixed load with token edits for SOAK_DURATION (default 10m), checking every answer
soak:
	bash .ci/soak.sh

## faults: the fault tests (Postgres down or slow, Redis down, kill -9, SIGTERM) against real processes
faults:
	bash .ci/postgres.sh
	bash .ci/redis.sh
	$(GO) test -count=1 ./e2e/

## screenshots: the console's screenshots in docs/, desktop and phone, from a real Chromium
screenshots:
	bash .ci/chromium.sh
	$(GO) test -count=1 ./browser/ -run 'TestConsole' -update-screenshot

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	bash .ci/postgres.sh
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## build: the tollgate binary, static
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/tollgate ./cmd/tollgate

## image: the container image (needs a Docker engine)
image:
	docker build --build-arg VERSION=$(VERSION) -t tollgate:$(VERSION) .
