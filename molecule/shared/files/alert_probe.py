"""Switch a simulated device into bearing wear and wait for its alert on local MQTT.

Run on a fog host with the fl virtualenv's Python (it has fl_runtime and paho-mqtt):
    python alert_probe.py NODE_ID DEVICE[,DEVICE...] [TIMEOUT]
The broker, the alert topic template and the simulator's control topic come from the
host's own /etc/fl/fl.toml, as `fl detect` and `fl sensor` read them. The probe
subscribes to the node's alert topics, picks the first listed device with no active
alert (a random fault episode may have raised one that stray over-threshold readings
keep up, and an injected fault would only prolong it), injects the fault with
`fl sensor inject`, waits for a `raised` alert detected after the injection, clears
the fault, and prints one JSON line; exit 0 when the alert came.
"""

import json
import queue
import subprocess
import sys
import time

from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion

from fl_runtime.config import load_config


def records(alerts, timeout):
    try:
        return json.loads(alerts.get(timeout=timeout) or b"{}")
    except (queue.Empty, ValueError):
        return None


def pick_quiet(alerts, devices, timeout):
    state = dict.fromkeys(devices, "cleared")
    since = dict.fromkeys(devices, time.time())
    deadline = time.time() + timeout
    while time.time() < deadline:
        doc = records(alerts, 0.5)
        if doc and doc.get("device_id") in state:
            state[doc["device_id"]], since[doc["device_id"]] = doc.get("state"), time.time()
        for device in devices:
            if state[device] != "raised" and time.time() - since[device] >= 2.0:
                return device, state
    return devices[0], state


def main() -> int:
    node_id, devices = sys.argv[1], sys.argv[2].split(",")
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 120.0
    cfg = load_config()
    topic = cfg.mqtt.alert_topic_template.format(node_id=node_id, device_id="+")
    alerts = queue.Queue()
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"verify-alerts-{node_id}")
    client.on_message = lambda _c, _u, msg: alerts.put(msg.payload)
    client.connect(cfg.mqtt.host, cfg.mqtt.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    device, states = pick_quiet(alerts, devices, 180)
    injected = time.time()
    inject = ["fl", "sensor", "inject", "--node-id", node_id, "--device", device]
    subprocess.run([*inject, "--fault", "bearing_wear"], check=True, timeout=30)
    found = None
    try:
        while found is None and time.time() - injected < timeout:
            doc = records(alerts, 1.0)
            if (doc and doc.get("device_id") == device and doc.get("state") == "raised"
                    and doc.get("detection_time", 0) >= injected):
                found = doc
    finally:
        subprocess.run([*inject, "--clear"], check=False, timeout=30)
        client.loop_stop()
        client.disconnect()
    result = {"alert": found is not None, "device": device, "states_before": states,
              "seconds_after_fault": round(time.time() - injected, 1)}
    if found is not None:
        result.update(score=found["score"], threshold=found["threshold"],
                      model_version=found["model_version"],
                      reading_to_alert_ms=round(
                          (found["detection_time"] - found["reading_time"]) * 1000, 1))
    print(json.dumps(result))
    return 0 if found is not None else 1


if __name__ == "__main__":
    sys.exit(main())
