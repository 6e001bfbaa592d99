# fedge: the Ansible side: lint, the container lab, Molecule, the demo.
# Included by the main Makefile (include mk/lab.mk). Every target works on a
# fresh Debian machine after `make lab-setup` (apt packages, Podman socket).

VENV          ?= .venv
LAB_BIN       := $(abspath $(VENV))/bin
LAB_PATH      := $(LAB_BIN):$(PATH)
LAB_INV       := inventories/containers
# Podman's Docker-compatible socket unless a Docker engine answers.
LAB_ENV        = @export PATH="$(LAB_PATH)"; eval "$$(lab/setup-podman.sh env)";
LAB_PLAYBOOKS := $(wildcard playbooks/*.yml)
LAB_INVENTORIES := inventories/lab inventories/containers inventories/single-host

.PHONY: lab-setup lab-deps lab-image lab-up lab-down lab-artifacts lint-ansible syntax-ansible \
        molecule molecule-default molecule-scale-out demo demo-down bench-deploy lab-status

## lab-setup: install Podman, runc, debootstrap (lab/setup-machine.sh) and start the Podman API socket
lab-setup:
	lab/setup-podman.sh start

## lab-deps: Ansible collections (community.docker, ansible.posix, community.general) from PyPI's `ansible`
lab-deps:
	@$(LAB_BIN)/python -c "import ansible_collections.community.docker, ansible_collections.ansible.posix, ansible_collections.community.general" 2>/dev/null \
	  || $(LAB_BIN)/pip install -q "ansible>=12,<13"

## lab-image: build localhost/fedge-lab:bookworm (debootstrap; reused while lab/image is unchanged)
lab-image: lab-setup
	$(LAB_ENV) lab/image/build.sh

## lab-artifacts: fill the controller-side cache (.artifacts) with `fl artifacts fetch` (playbooks/artifacts.yml)
lab-artifacts: lab-deps
	$(LAB_ENV) ansible-playbook playbooks/artifacts.yml

## lab-up: create the lab containers (cloud, fog-1, fog-2, device-1) on network fedge-lab
lab-up: lab-image lab-deps
	$(LAB_ENV) ansible-playbook -i $(LAB_INV) lab/lab.yml

## demo-down: remove the lab containers and network (also: lab-down)
lab-down demo-down: lab-deps
	$(LAB_ENV) if curl -fsS --max-time 5 --unix-socket /run/podman/podman.sock http://d/_ping >/dev/null 2>&1 || docker info >/dev/null 2>&1; then \
	  ansible-playbook -i $(LAB_INV) lab/lab.yml -e lab_state=absent; \
	else echo "no container engine running: nothing to remove"; fi

## lab-status: the health table of the running lab
lab-status: lab-deps
	$(LAB_ENV) ansible-playbook -i $(LAB_INV) playbooks/status.yml

## demo: the lab end to end (sets the machine up first): artifacts, containers, site.yml, >= 10 rounds with every fog node, summary and report in reports/demo
# An earlier demo's lab goes first, so the doctor finds its loopback ports free.
demo: setup venv lab-deps demo-down doctor
	$(LAB_ENV) python3 lab/demo.py demo

## bench-deploy: fresh lab, first converge, re-converge; prints the ratio (target <= 30%)
bench-deploy: venv lab-image lab-deps
	$(LAB_ENV) python3 lab/demo.py bench

## lint-ansible: yamllint, ansible-lint (production profile) and --syntax-check of every playbook x inventory
lint-ansible: lab-deps syntax-ansible
	$(LAB_ENV) yamllint .
	$(LAB_ENV) ansible-lint
syntax-ansible: lab-deps
	$(LAB_ENV) set -e; for inv in $(LAB_INVENTORIES); do for pb in $(LAB_PLAYBOOKS) lab/lab.yml; do \
	  ansible-playbook --syntax-check -i $$inv $$pb >/dev/null || { echo "syntax-check failed: $$pb with $$inv"; exit 1; }; \
	done; done; echo "syntax-check: $(words $(LAB_PLAYBOOKS)) playbooks (+ lab/lab.yml) x $(words $(LAB_INVENTORIES)) inventories OK"

## molecule: both scenarios (default, scale_out) with one image build; timings in reports/molecule/
molecule: lab-image lab-deps
	$(LAB_ENV) python3 lab/molecule_run.py default scale_out
molecule-default: lab-image lab-deps
	$(LAB_ENV) python3 lab/molecule_run.py default
molecule-scale-out: lab-image lab-deps
	$(LAB_ENV) python3 lab/molecule_run.py scale_out
