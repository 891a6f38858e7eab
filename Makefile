# The two commands a newcomer needs:
#   make run   builds, starts three test backends on 127.0.0.1:9001-9003 and
#              the balancer on :8080 with config.json; Ctrl-C stops them all.
#   make test  gofmt check, go vet, the race-enabled tests, and every
#              benchmark once in short form so none can rot.
# Only Go is needed.

GO ?= go
BIN := bin

# -version prints the module version or VCS revision that go build embeds.
# Go embeds none in a git worktree or with GOFLAGS=-buildvcs=false, so the
# build passes git's own description too; without git it is empty and
# Go's record is used.
GIT_VERSION := $(shell git describe --always --dirty=+dirty 2>/dev/null)
GIT_TIME := $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS := $(if $(GIT_VERSION),-ldflags "-X 'main.versionOverride=$(GIT_VERSION) (committed $(GIT_TIME))'")

.PHONY: run build test bench fuzz clean

build:
	$(GO) build $(LDFLAGS) -o $(BIN)/stdlb .
	$(GO) build -o $(BIN)/testbackend ./testbackend

# The backends run in the background of this shell; the trap stops them
# (by PID) however the balancer ends, Ctrl-C included.
run: build
	@set -u; pids=""; \
	trap 'kill $$pids 2>/dev/null; wait' EXIT INT TERM; \
	for i in 1 2 3; do \
		./$(BIN)/testbackend -addr 127.0.0.1:900$$i -name b$$i -quiet & pids="$$pids $$!"; \
	done; \
	./$(BIN)/stdlb -config config.json

test:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then \
		echo "gofmt would change these files:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) test -run '^$$' -bench . -benchtime 100x ./...

# The comparison with the backends direct and nginx/HAProxy (when
# installed): a table, and an SVG chart of it, in bench/out/ (not tracked).
# make bench BENCH_FLAGS=-record also appends the table to bench/RESULTS.md
# and writes the chart to bench/results.svg. Not part of make test.
bench:
	$(GO) run ./bench/suite $(BENCH_FLAGS)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseConfig -fuzztime 30s .

clean:
	rm -rf $(BIN)
