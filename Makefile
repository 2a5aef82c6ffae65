# bot-bottle build, test and demo targets. `make test` runs every test,
# integration tests against the local Docker Engine included; `make demo`
# builds what is missing and launches examples/demo.yaml.

GO        ?= go
BIN       := bin/bottle
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 60s
PKGS      := ./...

.PHONY: all build test unit lint fuzz bench images demo clean

all: build

# A static binary: it runs on the host and, unchanged, as every sidecar.
# bin/claude-stub is the stand-in claude of the default (stub) agent image.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bottle
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/claude-stub ./internal/claudestub

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Every test: unit, integration (real Docker Engine), fuzz seed corpora.
test: lint
	$(GO) test -race -count=1 -timeout 80m $(PKGS)

# Unit tests only (no engine needed).
unit:
	$(GO) test -race -count=1 -short $(PKGS)

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for spec in $$($(GO) run ./scripts/fuzztargets); do \
		pkg=$${spec%%:*}; target=$${spec##*:}; \
		echo "== $$pkg $$target ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./dag/

images: build
	$(BIN) images build

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin
