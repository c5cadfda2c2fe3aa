# botfleet: `make up` runs the demo bot, `make test` runs every test.
SHELL := /bin/bash
BOT ?= bots/demo
RASA := .venvs/rasa/bin
ACTIONS := .venvs/actions/bin
DEV := .venvs/dev/bin

OPERATOR := .venvs/operator/bin
NAMESPACE ?=

.PHONY: help venvs train up down status test lint validate nlu-cv eval-nlu operator-run bench profile clean

help:
	@echo "make up [PIPELINE=diet|botfleet]  start the demo bot on real or embedded stores"
	@echo "make down     stop what 'make up' started"
	@echo "make test     lint, validate the bot data, unit and end-to-end tests"
	@echo "make train    train the demo bot if its inputs changed"
	@echo "make validate rasa data validate --fail-on-warnings"
	@echo "make nlu-cv   NLU cross-validation report in reports/nlu-cv (not in git)"
	@echo "make eval-nlu TRAIN=f TEST=f PIPELINE=diet|botfleet [OOS=f] [MIN_ACCURACY=x]  NLU evaluation, JSON"
	@echo "make operator-run [NAMESPACE=ns]  run the operator from this tree against the current kubeconfig"
	@echo "make bench [BENCH='nlu e2e operator'] [BOTS='1 100 1000']  benchmarks, one JSON document"
	@echo "make profile [PIPELINE=botfleet|diet|stock]  where Rasa's time goes under load (needs py-spy)"

venvs:
	@bash ci/venvs.sh
	@bash ci/tools.sh

train: venvs
	@python3 ci/train.py $(BOT)

# PIPELINE=botfleet: intents from the BentoML model server (trained and started here).
PIPELINE ?= diet
up: venvs
	@BOTFLEET_PIPELINE=$(PIPELINE) $(DEV)/python ci/stack.py up

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

# `botfleet nlu eval`, the gate CI pipelines call; exits 1 when a gate fails.
eval-nlu: venvs
	@$(DEV)/botfleet nlu eval --train $(TRAIN) --test $(TEST) --pipeline $(PIPELINE) \
		$(if $(OOS),--oos $(OOS)) $(if $(MIN_ACCURACY),--min-accuracy $(MIN_ACCURACY))

# The operator from the working tree, against whatever cluster kubectl points at.
# Install the CRD first: kubectl apply -f k8s/crds/
operator-run: venvs
	@$(OPERATOR)/botfleet-operator --log-format=plain $(if $(NAMESPACE),--namespace=$(NAMESPACE),--all-namespaces)

# One JSON document: NLU (both pipelines), end to end (stock Rasa vs botfleet), memory,
# and the operator at 1, 100 and 1,000 Bots. About 40 minutes on 2 cores.
# Targets live here, never in timed tests. BENCH='nlu e2e operator' picks sections.
BOTS ?= 1 100 1000
BENCH ?= nlu e2e operator
bench: venvs
	@$(DEV)/python ci/bench.py --only $(BENCH) --bots $(BOTS)

# Where a turn's time goes inside Rasa under load (py-spy; PIPELINE=botfleet|diet|stock).
profile: PIPELINE = botfleet
profile: venvs
	@$(DEV)/python ci/profile_rasa.py --pipeline $(PIPELINE)

clean: down
	rm -rf .run reports $(BOT)/models
