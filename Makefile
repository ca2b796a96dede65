# gicap: `make run` starts the server with working defaults (Secure ICAP included),
# `make test` sets up and runs the tests, `make bench` compares gicap with c-icap.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
DEV_CERTS := dev-certs
TLS_DIR := /etc/gicap/tls

.PHONY: setup run test bench lint clean

$(BIN)/gicap-installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' $(foreach p,$(PLUGIN_DIRS),-e ./$(p))
	touch $@

setup: $(BIN)/gicap-installed

# Uses the certificates in /etc/gicap/tls when they are installed; otherwise makes a
# development CA, server and client certificate in ./dev-certs so Secure ICAP works.
run: setup
	@if [ -f $(TLS_DIR)/tls-server-cert ]; then \
		exec $(BIN)/gicap serve; \
	else \
		[ -f $(DEV_CERTS)/tls-server-cert ] || $(BIN)/gicap certs dev $(DEV_CERTS); \
		GICAP_CERTIFICATE__CERTFILE=$(CURDIR)/$(DEV_CERTS)/tls-server-cert \
		GICAP_CERTIFICATE__KEYFILE=$(CURDIR)/$(DEV_CERTS)/tls-server-key \
		GICAP_CERTIFICATE__CAFILE=$(CURDIR)/$(DEV_CERTS)/tls-cafile \
		exec $(BIN)/gicap serve --settings settings.toml; \
	fi

lint: setup
	$(BIN)/ruff check gicap tests bench $(PLUGIN_DIRS)

test: setup lint
	$(BIN)/pytest -q -ra

bench: setup
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.engines

clean:
	rm -rf $(VENV) $(DEV_CERTS) build *.egg-info
