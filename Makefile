# sipedge: the two commands of the README are `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= daemons/conf/sipedge.demo.yaml

.PHONY: setup run test pytest lint unit fuzz molecule bench image vm test-image clean

setup:
	./.ci/setup

## Bring the appliance up locally on the demo config (all peers on 127.0.0.1).
run: setup
	$(PY) -m sipedge.demo --config $(CONFIG)

## The whole test suite: lint, types, unit, integration (SIPp, namespaces, XDP), Molecule.
## pytest and Molecule run side by side: pytest mostly waits on SIP timers (about a tenth of
## the two cores), and its workers are done before Molecule reaches the CPU-bound `vm`
## scenario (QEMU TCG). Molecule's `default` and `upgrade` scenarios also run at the same time
## (molecule/run), and vm's image is built in the background after `default`.
## Molecule's output streams; pytest's (and `default`'s) comes as one block when it ends.
## ./molecule/setup first: pytest's role-rendering tests use its Ansible venv, and would skip
## if pytest reached them before molecule/run had made it.
test: setup lint
	./molecule/setup
	./.ci/side-by-side "$(PYTEST)" "./molecule/run"

## pytest-xdist: 4 workers on 2 cores, since most integration tests wait on SIP timers; worksteal
## keeps the minute-long tests from piling up on one worker at the end. PYTEST_WORKERS=0 runs them
## in one process (for debugging a test that needs the whole machine).
PYTEST_WORKERS ?= 4
PYTEST = $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal
pytest: setup
	$(PYTEST)

## Molecule scenarios: install, configure, upgrade N -> N+1 (podman systemd containers), then the
## appliance image under QEMU (build, boot, A/B update, rollback; about 12 min under TCG).
molecule: setup
	./molecule/run

lint:
	$(VENV)/bin/ruff check daemons tests
	$(VENV)/bin/ruff format --check daemons tests
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -q tests/unit

## The long SIP fuzz run (docs/sip-conformance.md): FUZZ_INPUTS datagrams into an in-process
## sipd, inputs/s as it goes, findings under fuzz-findings/ (exit 1 if any). `make test` runs
## the quick one (tests/fuzz/test_fuzz.py).
FUZZ_INPUTS ?= 1000000
FUZZ_SEED   ?= 0
fuzz: setup
	$(PY) -m tests.fuzz.long_run --inputs $(FUZZ_INPUTS) --seed $(FUZZ_SEED) --findings fuzz-findings

## Appliance image (root): build raw + qcow2 under image/out/, boot it under QEMU (TCG here).
image:
	image/build

vm: image
	image/vm

## The image's Molecule scenario alone (also part of `make test`; see docs/image.md).
test-image: setup
	./molecule/run vm

bench: setup
	$(PY) -m tests.bench.sip_cps $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
