"""The lab's own facts: fixed addresses, loopback ports, the README's client block.

The lab resolves names without the container engine's DNS, so every host it or
Molecule creates needs a unique fixed address; `make doctor` and lab/clients.py
read the ports and commands from their owners (inventory, roles, README).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "containers"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"lab_{name}", ROOT / "lab" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _yaml(path: Path) -> dict[str, object]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def _lab_hosts() -> set[str]:
    """Every host the demo lab or a Molecule scenario creates."""
    hosts: set[str] = set()
    for scenario in (ROOT / "molecule").glob("*/molecule.yml"):
        hosts |= {p["name"] for p in _yaml(scenario).get("platforms", [])}  # type: ignore[attr-defined]
    inv = _yaml(INVENTORY / "hosts.yml")["all"]
    for group in inv["children"].values():  # type: ignore[index]
        hosts |= set((group or {}).get("hosts") or {})
    return hosts


def test_every_lab_host_has_a_unique_fixed_address_in_the_lab_subnet() -> None:
    # Prepare
    all_vars = _yaml(INVENTORY / "group_vars" / "all.yml")
    prefix = str(all_vars["lab_subnet_prefix"])
    subnet = ipaddress.ip_network(f"{prefix}.0/24")
    # Execute
    numbers = {
        h: _yaml(INVENTORY / "host_vars" / f"{h}.yml").get("lab_host_number") for h in _lab_hosts()
    }
    # Assert
    assert None not in numbers.values(), f"hosts without lab_host_number: {numbers}"
    assert len(set(numbers.values())) == len(numbers), f"addresses clash: {numbers}"
    for host, number in numbers.items():
        address = ipaddress.ip_address(f"{prefix}.{number}")
        assert address in subnet and address not in (subnet.network_address, subnet[1]), host


def test_molecule_creates_hosts_through_the_lab_task_file() -> None:
    for scenario in (ROOT / "molecule").glob("*/molecule.yml"):
        playbooks = _yaml(scenario)["provisioner"]["playbooks"]  # type: ignore[index]
        assert playbooks["create"] == "../shared/create.yml", scenario
        assert playbooks["destroy"] == "../shared/destroy.yml", scenario
    for step in ("create", "destroy"):
        text = (ROOT / "molecule" / "shared" / f"{step}.yml").read_text(encoding="utf-8")
        assert "../../lab/containers.yml" in text


def test_doctor_reads_every_loopback_port_from_its_owner() -> None:
    # Prepare
    doctor = _load("doctor")
    dashboard = _yaml(ROOT / "roles" / "dashboard" / "defaults" / "main.yml")["dashboard_port"]
    kafka = _yaml(INVENTORY / "group_vars" / "cloud.yml")["kafka_external_port"]
    # Execute
    ports = doctor.loopback_ports()
    # Assert
    assert ports[dashboard] == "the dashboard"
    assert ports[kafka] == "Kafka's external listener"
    assert ports[18831] == "Mosquitto of fog-1" and ports[18832] == "Mosquitto of fog-2"


def test_readme_client_block_uses_the_published_ports() -> None:
    # Prepare
    clients = _load("clients")
    kafka = _yaml(INVENTORY / "group_vars" / "cloud.yml")["kafka_external_port"]
    fog1 = _yaml(INVENTORY / "host_vars" / "fog-1.yml")["lab_mqtt_loopback_port"]
    # Execute
    script = clients.readme_commands()
    # Assert
    assert f"kcat -b 127.0.0.1:{kafka}" in script
    assert f"mosquitto_pub -h 127.0.0.1 -p {fog1}" in script
    assert f"mosquitto_sub -h 127.0.0.1 -p {fog1}" in script
