# Chartreuse — the usual targets. `make help` lists them.
SHELL := /bin/bash
VERSION := $(shell cat VERSION)
PKG := github.com/chartreuse-go/chartreuse
LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION)
STEPS := check-databases wait-for-db wait-patroni scale-down migrate scale-restore gate helm-wait
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
GO ?= go

.PHONY: help build test test-full test-unit lint bench demo clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## static step binaries in bin/
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -tags urfave_cli_no_docs -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./steps/,$(STEPS))

test: ## every package's tests and the core end-to-end scenarios, real servers included (installs what it needs; needs root)
	test/run-tests.sh

test-full: ## make test with e2e's extended scenarios too (variants of the paths make test takes; more than 90 minutes on 2 cores)
	CHARTREUSE_E2E=full test/run-tests.sh

test-unit: ## fast tests, no servers
	$(GO) test -short ./...

lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench: ## benchmarks against goose, Alembic, psql and sequential scaling (needs root; table in bench/results-<date>.txt)
	bench/run.sh

demo: ## run the main job on a throwaway local PostgreSQL and cluster
	test/demo.sh

clean:
	rm -rf bin dist

.PHONY: image
image: ## the container image, built without Docker, as dist/chartreuse-$(VERSION).tar (docker load / crane push)
	$(GO) run ./images/build/cmd -o dist/chartreuse-$(VERSION).tar

.PHONY: docs
docs: ## regenerate docs/reference from the step binaries and the manifests, and the Helm chart's copies of the manifests (their tests check both)
	$(GO) run ./test/cmd/pipelinegen
	$(GO) run ./test/cmd/docgen
	$(GO) run ./test/cmd/chartsync
