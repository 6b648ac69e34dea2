# Portcullis. `make demo` runs a local control plane + Dex + Portcullis;
# `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(VERSION)
BIN := _output/bin
# e2e tests start real kube-apiservers; 2 cores cope with 2 at a time.
E2E_PARALLEL ?= 2

.PHONY: all build test unit e2e demo lint tools bench bench-scale bench-scale-webhook bench-scale-login bench-scale-proxy bench-scale-store fuzz clean release image manifests release-test cross

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/portcullis-server ./cmd/portcullis

tools: ## kube-apiserver, etcd and Dex for the tests, built from Go modules (cached)
	hack/build-tools.sh

unit:
	$(GO) test -race -count=1 ./pkg/... ./cmd/...
	# Measures the stack frames of a production build: not under -race.
	$(GO) test -count=1 -run '^TestIdleStreamWaitsOnAShallowStack$$' ./pkg/server/hotpath
	$(MAKE) release-test
	$(MAKE) cross

# go test shows nothing of a passing package's output: the tests skipped for
# a missing component (chromium) are listed in a report printed at the end.
e2e: tools
	@report=$$(mktemp); \
	PORTCULLIS_E2E_SKIPPED_REPORT=$$report $(GO) test -count=1 -timeout 40m -parallel $(E2E_PARALLEL) ./test/e2e/...; rc=$$?; \
	cat $$report >&2; rm -f $$report; exit $$rc

test: lint unit e2e

# Ctrl-C ends the demo. The test binary is run directly, not through `go
# test`, which exits 1 after any interrupt even when the test ended cleanly.
demo: tools
	$(GO) test -c -tags demo -o $(BIN)/portcullis-demo.test ./test/e2e/
	cd test/e2e && KEEP_E2E_LOGS=1 $(CURDIR)/$(BIN)/portcullis-demo.test -test.run '^TestDemo$$' -test.v -test.timeout 0

bench: ## Go benchmarks of the hot paths; see docs/benchmarks.md
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./pkg/token/ ./pkg/store/bolt/ ./pkg/webhook/ ./pkg/portal/ ./pkg/registry/ ./pkg/proxy/ | tee _output/bench.txt

# Cost curves (docs/benchmarks.md, "Cost curves"): each bench-scale-<curve>
# target measures one curve on loopback, writes its CSV into docs/img and
# renders it to SVG there with hack/benchplot (a module of its own for the
# plotting library), and its markdown table into _output. Not part of
# `make test`. bench-scale runs them all.
bench-scale: bench-scale-webhook bench-scale-store bench-scale-login bench-scale-proxy

# The webhook's, as distinct live tokens grow: about 2 minutes.
SCALE_TOKENS ?= 1k,5k,10k,20k,50k,100k,1M
SCALE_DURATION ?= 8s
bench-scale-webhook:
	mkdir -p _output docs/img
	$(GO) run ./hack/bench/tokenreview -scale $(SCALE_TOKENS) -duration $(SCALE_DURATION) -csv docs/img/webhook-tokens.csv | tee _output/webhook-tokens.md
	cd hack/benchplot && $(GO) run . -kind webhook-tokens -in $(CURDIR)/docs/img/webhook-tokens.csv -out $(CURDIR)/docs/img/webhook-tokens.svg

# The session store's, as sessions grow: the bolt store at STORE_SESSIONS
# (hack/bench/store: 3 to 7 minutes for 10k,100k,1M, 2.7 GiB of peak memory
# and 1 GiB in /dev/shm and in /tmp at 1M), then the kubernetes store against
# a real kube-apiserver and etcd at each of STORE_KUBERNETES_SESSIONS
# (BenchmarkKubernetesSessionScale: about 1 minute for 10000; add 100000 for
# 3 to 5 more minutes and 2 GiB more memory in kube-apiserver), each
# appending its row to the same CSV. 1M is out of reach for kubernetes here.
STORE_SESSIONS ?= 10k,100k,1M
STORE_KUBERNETES_SESSIONS ?= 10000
bench-scale-store: tools
	mkdir -p _output docs/img
	set -o pipefail; $(GO) run ./hack/bench/store -sessions $(STORE_SESSIONS) -csv docs/img/store-sessions.csv | tee _output/store-sessions.md
	set -o pipefail; for n in $(STORE_KUBERNETES_SESSIONS); do \
		PORTCULLIS_BENCH_SESSIONS=$$n PORTCULLIS_BENCH_CSV=$(CURDIR)/docs/img/store-sessions.csv \
		$(GO) test -count=1 ./test/e2e -run '^$$' -bench '^BenchmarkKubernetesSessionScale$$' -benchtime 1x -v -timeout 30m \
		| tee -a _output/store-sessions-kubernetes.log; \
	done
	cd hack/benchplot && $(GO) run . -kind store-sessions -in $(CURDIR)/docs/img/store-sessions.csv -out $(CURDIR)/docs/img/store-sessions.svg

# The login portal's, as logins in flight grow, with Dex's password check
# (bcrypt cost 10) and without one, the last also with an ECDSA serving
# key: about 3.5 minutes.
LOGIN_INFLIGHT ?= 1,2,4,8,16,32
LOGIN_DURATION ?= 8s
LOGIN_SERIES ?= bcrypt-10,no-password,no-password+ecdsa
bench-scale-login:
	mkdir -p _output docs/img
	$(GO) test ./test/e2e -run '^$$' -bench '^BenchmarkLoginCurve$$' -benchtime 1x -timeout 20m -v \
		-login-inflight $(LOGIN_INFLIGHT) -login-duration $(LOGIN_DURATION) -login-series $(LOGIN_SERIES) \
		-login-csv $(CURDIR)/docs/img/login.csv | tee _output/login.md
	cd hack/benchplot && $(GO) run . -kind login -in $(CURDIR)/docs/img/login.csv -out $(CURDIR)/docs/img/login.svg

# The impersonating proxy's, as clusters and idle watches grow, against a
# real etcd and kube-apiserver (test/e2e): 3 to 5 minutes.
PROXY_CLUSTERS ?= 1,10,100
PROXY_WATCHES ?= 1k,10k,20k
bench-scale-proxy:
	mkdir -p _output docs/img
	$(GO) test ./test/e2e -run '^$$' -bench '^BenchmarkProxy(Clusters|Watches)$$' -benchtime 1x -timeout 20m \
		-proxy-clusters $(PROXY_CLUSTERS) -proxy-clusters-csv $(CURDIR)/docs/img/proxy-clusters.csv \
		-proxy-watches $(PROXY_WATCHES) -proxy-watches-csv $(CURDIR)/docs/img/proxy-watches.csv \
		> _output/proxy-curves.log 2>&1; status=$$?; grep '^|' _output/proxy-curves.log | tee _output/proxy-curves.md; exit $$status
	cd hack/benchplot && $(GO) run . -kind proxy-clusters -in $(CURDIR)/docs/img/proxy-clusters.csv -out $(CURDIR)/docs/img/proxy-clusters.svg
	cd hack/benchplot && $(GO) run . -kind proxy-watches -in $(CURDIR)/docs/img/proxy-watches.csv -out $(CURDIR)/docs/img/proxy-watches.svg

# Every Go fuzz target in the repository, each for FUZZTIME (their seed
# corpora already run as ordinary tests in `make unit`). A failure leaves the
# input under the package's testdata/fuzz/<Target>/: commit it as a seed.
FUZZTIME ?= 1m
fuzz:
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg cmd internal); do \
		dir=./$$(dirname $$file); \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			echo "== $$target ($$dir, $(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed: skipped (go install honnef.co/go/tools/cmd/staticcheck@v0.8.2)"; fi

# Both commands build for macOS and Windows too (the CLI runs there; the
# server builds, for developers): CI checks so it cannot regress.
cross:
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/...
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/...

# Releases (docs/install.md). Each takes VERSION (default: git describe).
release: ## static, reproducible binaries for every platform, SHA256SUMS and the krew manifest in _output/release
	VERSION=$(VERSION) hack/release.sh

image: ## the multi-arch (linux/amd64, linux/arm64) OCI image layout in _output/image, built without a Docker daemon
	VERSION=$(VERSION) hack/image.sh

manifests: ## one install YAML per mode in _output/manifests, with this release's image
	VERSION=$(VERSION) hack/manifests.sh

# The release tooling's own module (hack/release): the image builder and the
# krew manifest filler, and their tests (one unpacks the image and runs the
# server from it).
release-test:
	cd hack/release && $(GO) vet ./... && $(GO) test -count=1 -timeout 30m ./...

clean:
	rm -rf _output
