# Cinema Billing — every command a developer needs. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PYTHON_VERSION ?= python3.11

.DEFAULT_GOAL := help
.PHONY: help install up down reset restart status logs demo test test-unit test-integration token lint format \
	requirements report chaos bench bench-renewals clean mail audit

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# a venv that can install (python3-venv installed when missing; a half-made .venv made again)
$(PY):
	@scripts/ensure_venv.sh $(VENV) $(PYTHON_VERSION)

$(VENV)/.installed: $(PY) requirements.txt billing/pyproject.toml pay_api/pyproject.toml etl/pyproject.toml
	@scripts/ensure_venv.sh $(VENV) $(PYTHON_VERSION)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e billing -e pay_api -e etl
	touch $@

install: $(VENV)/.installed ## create .venv and install the pinned requirements and the services

up: install ## start the whole system in the background (offline defaults), keeping its data; print the URLs
	@scripts/stack.sh up

down: ## stop everything `make up` started (the data stays for the next `make up`)
	@scripts/stack.sh down

reset: install ## stop, delete the system's data (databases, localstripe, ETL state), start it empty
	@scripts/stack.sh reset

restart: down up ## down, then up

status: ## which services run
	@scripts/stack.sh status

# make logs                 follow every service's log;  make logs SERVICE=billing   one service
logs: ## follow the logs (JSON lines): all, or SERVICE=<name>
	@scripts/stack.sh logs $(SERVICE)

mail: install ## the emails the running system sent (kept by the local SMTP server) [TO=address]
	@$(PY) scripts/show_mail.py $(if $(TO),--to $(TO))

demo: install ## play the user scenario against the running system (after `make up`)
	@$(PY) scripts/demo.py

test: install ## every test: unit and service tests of each service, then the integration tests
	@scripts/stack.sh datastores
	@scripts/ensure_tools.sh
	$(PYTEST) -q deploy/tests
	$(PYTEST) -q admin/tests etl/tests
	$(PYTEST) -q billing/tests
	$(PYTEST) -q pay_api/tests
	@scripts/ensure_chromium.sh
	$(PYTEST) -q integration_tests

test-unit: install ## only the tests of each service and of the deployment
	@scripts/stack.sh datastores
	@scripts/ensure_tools.sh
	$(PYTEST) -q deploy/tests
	$(PYTEST) -q admin/tests etl/tests billing/tests pay_api/tests

test-integration: install ## only the black-box tests (start their own stack on other ports)
	@scripts/stack.sh datastores
	@scripts/ensure_chromium.sh
	$(PYTEST) -q integration_tests

# make token USER=<uuid>            a user token for billing's public API
# make token SERVICE=movies         a service token for billing's internal API (aud=billing)
token: install ## mint a development token: USER=<uuid> or SERVICE=<name> [AUD=billing]
	@$(PY) scripts/mint_token.py $(if $(SERVICE),--service $(SERVICE) --audience $(or $(AUD),billing),--user "$(USER)")

report: install ## integration tests, then the Allure report as one file: var/allure-report/index.html
	@scripts/stack.sh datastores
	@scripts/ensure_chromium.sh
	rm -rf var/allure-results
	@status=0; $(PYTEST) -q integration_tests || status=$$?; scripts/allure_report.sh; exit $$status

# make chaos [SEED=n] [USERS=n]: the fault suite, then the chaos run (see README, "Faults and chaos")
chaos: install ## fault suite, then 200 users buying and renewing under a moving clock and seeded random faults; ends with the chaos: line
	@scripts/stack.sh datastores
	@scripts/ensure_chromium.sh
	$(PYTEST) -q integration_tests/tests/test_faults.py integration_tests/tests/test_renewal_faults.py
	@$(PY) scripts/chaos.py $(if $(SEED),--seed $(SEED)) $(if $(USERS),--users $(USERS))

bench: install ## access-check benchmark against the running system (see bench/README.md)
	@$(PY) bench/access_check.py

# make bench-renewals [SIZES=10000,100000]: a stack of its own on ports 27000+ (see bench/README.md)
bench-renewals: install ## renewal throughput at two sizes and the Stripe rate cap (own stack, fake Stripe)
	@scripts/stack.sh datastores
	@$(PY) bench/renewals.py $(if $(SIZES),--sizes $(SIZES))

audit: install ## pip-audit over requirements.txt (fails on a known vulnerability not in audit-allowlist.txt)
	@scripts/audit.sh

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## ruff format and fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

requirements: $(PY) ## recompile requirements.txt from requirements.in
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --no-emit-index-url --no-emit-find-links --strip-extras \
		-o requirements.txt requirements.in

clean: down ## stop everything (our own PostgreSQL/Redis too) and remove var/: every piece of data
	@scripts/stack.sh stop-datastores
	rm -rf var
