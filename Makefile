# botfleet: `make up` runs the demo bot, `make test` runs every test.
SHELL := /bin/bash
BOT ?= bots/demo
RASA := .venvs/rasa/bin
ACTIONS := .venvs/actions/bin
DEV := .venvs/dev/bin

OPERATOR := .venvs/operator/bin
NAMESPACE ?=

.PHONY: help venvs train up down status test lint validate nlu-cv operator-run bench clean

help:
	@echo "make up       start the demo bot (Rasa, action server) on real or embedded stores"
	@echo "make down     stop what 'make up' started"
	@echo "make test     lint, validate the bot data, unit and end-to-end tests"
	@echo "make train    train the demo bot if its inputs changed"
	@echo "make validate rasa data validate --fail-on-warnings"
	@echo "make nlu-cv   NLU cross-validation report in reports/nlu-cv (not in git)"
	@echo "make operator-run [NAMESPACE=ns]  run the operator from this tree against the current kubeconfig"
	@echo "make bench [BOTS='1 20']         operator benchmark against kmock, printed as JSON"

venvs:
	@bash ci/venvs.sh

train: venvs
	@python3 ci/train.py $(BOT)

up: venvs
	@$(DEV)/python ci/stack.py up

down:
	@if [ -x $(DEV)/python ]; then $(DEV)/python ci/stack.py down; fi

status:
	@$(DEV)/python ci/stack.py status

test: venvs
	@bash ci/test.sh

lint: venvs
	@bash ci/test.sh lint

validate: venvs
	@cd $(BOT) && ../../$(RASA)/rasa data validate --fail-on-warnings --config config.yml --domain domain.yml --data data

nlu-cv: venvs
	@mkdir -p reports/nlu-cv
	@cd $(BOT) && ../../$(RASA)/rasa test nlu --cross-validation --folds 3 --config config.yml \
		--nlu data/nlu.yml --out ../../reports/nlu-cv
	@echo "report: reports/nlu-cv/intent_report.json"

# The operator from the working tree, against whatever cluster kubectl points at.
# Install the CRD first: kubectl apply -f k8s/crds/
operator-run: venvs
	@$(OPERATOR)/botfleet-operator --log-format=plain $(if $(NAMESPACE),--namespace=$(NAMESPACE),--all-namespaces)

# 100 and 1,000 Bots do not finish in reasonable time against kmock yet (issue #3).
BOTS ?= 1 20
# Benchmarks print JSON; targets live here, never in timed tests.
bench: venvs
	@$(OPERATOR)/python ci/bench_operator.py $(BOTS)

clean: down
	rm -rf .run reports $(BOT)/models
