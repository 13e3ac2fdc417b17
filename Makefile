# realtime — the two commands a newcomer needs are `make run` and `make test`;
# both install what they need first.
GO      ?= go
OUT     ?= out
# The concurrent packages run under the race detector; -timeout keeps a hung
# test from eating CI's budget.
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: test deps apt-install vet bench fmt fuzz run loadtest

## deps: Go modules; redis-server for the Redis tests, chromium for the
## browser test and promtool (Debian's prometheus package) for the checks of
## deploy/'s alert rules, installed with apt-get when missing and we are root.
deps:
	$(GO) mod download
	@$(MAKE) --no-print-directory apt-install CMD=redis-server PKG=redis-server
	@$(MAKE) --no-print-directory apt-install CMD=chromium PKG=chromium
	@$(MAKE) --no-print-directory apt-install CMD=promtool PKG=prometheus

apt-install:
	@command -v $(CMD) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $(PKG) (apt-get install -y $(PKG))"; \
	    (apt-get install -y -qq $(PKG) >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $(PKG); }) \
	      || { echo "could not install $(PKG); run: apt-get update && apt-get install -y $(PKG)" >&2; exit 1; }; \
	  else \
	    echo "$(CMD) is missing; install it with: sudo apt-get install -y $(PKG)" >&2; exit 1; \
	  fi; }

## run: the server on 127.0.0.1:8080 — the demo page at /, /ws, /metrics,
## /healthz, /readyz — single pod, no Redis. For the demo it takes user IDs
## from ?user= (-insecure-dev-auth); for anything real set RUNAUTH to
## "-jwt-secret <secret>". More flags: ARGS="-raw-addr 127.0.0.1:8081".
ADDR    ?= 127.0.0.1:8080
RUNAUTH ?= -insecure-dev-auth
run:
	$(GO) mod download
	$(GO) run ./cmd/realtime -addr $(ADDR) $(RUNAUTH) $(ARGS)

## loadtest: real sockets against our server (both doors) and the gorilla
## baseline, in one run; writes out/loadtest/report.json.
CONNS ?= 10000
MSGS  ?= 100
RATE  ?= 25
REPEAT ?= 3
loadtest:
	@mkdir -p $(OUT)
	$(GO) build -o $(OUT)/bin/ ./loadtest ./cmd/realtime ./cmd/baseline
	$(OUT)/bin/loadtest -conns $(CONNS) -msgs $(MSGS) -rate $(RATE) -repeat $(REPEAT) -out $(OUT)/loadtest $(ARGS)

## vet: go vet and a gofmt check.
vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:" $$out >&2; exit 1; fi

## test: every test, with set-up; then each fuzz target briefly (longer by
## hand: make fuzz FUZZTIME=10m).
# make test fuzzes for a number of inputs, not a time: a time budget that
# runs out while a worker is busy makes go test report "context deadline
# exceeded" as a failure with no input saved (it failed CI that way here).
# About 10 s each on this machine; FUZZTIME=10m overrides them all.
FUZZREADER  ?= 300000x
FUZZCOMMAND ?= 40000x
FUZZDECODE  ?= 100000x
test: deps vet
	$(GO) test $(TESTFLAGS) ./...
	$(MAKE) --no-print-directory fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(or $(FUZZTIME),$(FUZZREADER)) ./internal/wsframe
	$(GO) test -run '^$$' -fuzz '^FuzzCommand$$' -fuzztime $(or $(FUZZTIME),$(FUZZCOMMAND)) .
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSimple$$' -fuzztime $(or $(FUZZTIME),$(FUZZDECODE)) .

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: hub benchmarks beside the naive baseline, as a table of medians;
## then Redis publish throughput, cross-pod latency and partition traffic;
## a join storm with events on; a 10 s Redis stall under load.
# Each family has its own -benchtime: the naive hub's join/leave under
# broadcast mis-calibrates b.N with a time target, so it runs a fixed count,
# long enough at -cpu 1 (one P) for the broadcaster to get its time slices.
BENCHCOUNT ?= 5
bench: deps
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench '^BenchmarkBroadcast$$' -benchmem -cpu 1,2 -count $(BENCHCOUNT) ./bench/ | tee $(OUT)/bench.txt
	$(GO) test -run '^$$' -bench '^BenchmarkJoinLeaveUnderBroadcast$$' -benchmem -cpu 1 -count $(BENCHCOUNT) -benchtime 300000x ./bench/ | tee -a $(OUT)/bench.txt
	$(GO) test -run '^$$' -bench '^BenchmarkJoinLeaveUnderBroadcast$$' -benchmem -cpu 2 -count $(BENCHCOUNT) -benchtime 20000x ./bench/ | tee -a $(OUT)/bench.txt
	$(GO) test -run '^$$' -bench '^BenchmarkSendTo$$' -benchmem -cpu 1,2 -count $(BENCHCOUNT) ./bench/ | tee -a $(OUT)/bench.txt
	@echo
	$(GO) run ./cmd/benchtable < $(OUT)/bench.txt | tee $(OUT)/bench.md
	@echo
	@echo "Redis (a redis-server on a free loopback port):"
	$(GO) test -run '^$$' -bench '^BenchmarkPublish$$' -benchtime 3s -count $(BENCHCOUNT) ./bench/ | tee $(OUT)/bench-redis.txt
	$(GO) test -run '^$$' -bench '^BenchmarkCrossPodLatency$$' -benchtime 1x -count $(BENCHCOUNT) ./bench/ | tee -a $(OUT)/bench-redis.txt
	$(GO) test -run '^$$' -bench '^BenchmarkPartitionTraffic$$' -benchtime 1x ./bench/ | tee -a $(OUT)/bench-redis.txt
	@echo
	@echo "Room history (Redis streams) on and off, same redis-server:"
	$(GO) test -run '^$$' -bench '^BenchmarkHistoryPublish$$' -benchtime 3s -count $(BENCHCOUNT) ./bench/ | tee $(OUT)/bench-history.txt
	$(GO) test -run '^$$' -bench '^BenchmarkHistoryCrossPodLatency$$' -benchtime 1x -count $(BENCHCOUNT) ./bench/ | tee -a $(OUT)/bench-history.txt
	@echo
	@echo "Server API: POST /api/publish (keep-alive, 64 in flight) beside the in-process Publish:"
	$(GO) test -run '^$$' -bench '^BenchmarkAPIPublish$$' -benchtime 2s -count $(BENCHCOUNT) ./bench/ | tee $(OUT)/bench-api.txt
	@echo
	@echo "Join storm: 10,000 joins into one room, per-join events beside the coalesced default:"
	$(GO) test -run '^$$' -bench '^BenchmarkJoinStorm$$' -benchtime 3x -benchmem ./bench/ | tee $(OUT)/bench-joinstorm.txt
	@echo
	@echo "Small-room join storm: 1,000 real connections into 20 rooms of 50, batched join events beside per-event writes:"
	$(GO) test -run '^$$' -bench '^BenchmarkSmallRoomJoinStorm$$' -benchtime 3x -benchmem ./bench/ | tee $(OUT)/bench-smallrooms.txt
	@echo
	@echo "One connect on the raw door (upgrade, greeting, join, acknowledgement), with what it allocates:"
	$(GO) test -run '^$$' -bench '^BenchmarkRawConnect$$' -benchtime 5000x -count 3 -benchmem ./bench/ | tee $(OUT)/bench-connect.txt
	@echo
	@echo "Redis frozen (SIGSTOP) 10 s under load on one of two pods:"
	$(GO) test -run '^$$' -bench '^BenchmarkRedisStall$$' -benchtime 1x ./bench/ | tee $(OUT)/bench-stall.txt
