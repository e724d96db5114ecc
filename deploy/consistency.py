"""What the schemas cannot see: that deploy/'s files agree with each other.

    python3 deploy/consistency.py DEPLOY_DIR [--rewrite-config OUT PLUGIN_DIR STATE_DIR]

Checks, each failure one line naming the files:
- deploy/k8s/configmap.yaml's wsgate.toml is deploy/wsgate.toml, byte for byte;
- kustomization.yaml lists every manifest of deploy/k8s/ (and only those);
- the Deployment's ports are the ones wsgate.toml listens on, its probes ask
  /healthz and /readyz on the admin port, its config mount holds the file
  its --config names, the Services and the PodDisruptionBudget select its
  pods, the ServiceMonitor scrapes a port the admin Service names;
- terminationGracePeriodSeconds is longer than preStop + drain-timeout, and
  the systemd unit's TimeoutStopSec longer than drain-timeout.

With --rewrite-config it also writes the toml for a test start on this
machine to OUT: every address on 127.0.0.1:0 (nothing binds all addresses
in a test), the plugins taken from PLUGIN_DIR, the race memory in STATE_DIR.

Needs PyYAML (the tools' venv has it: kubernetes-validate depends on it).
"""

import pathlib
import re
import sys
import tomllib

import yaml

# wsgate's default drain-timeout, in seconds (`[serve]
# drain-timeout`, default 30), used when wsgate.toml does not set one.
DEFAULT_DRAIN_TIMEOUT = 30

failures = []


def fail(text):
    failures.append(text)


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def seconds(value):
    """A systemd time span in seconds ("45", "45s", "1min 30s")."""
    total = 0
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", value):
        if unit not in units:
            raise ValueError(f"unknown time unit {unit!r} in {value!r}")
        total += int(number) * units[unit]
    return total


def systemd_value(unit_text, key):
    values = [m.group(1).strip() for m in re.finditer(rf"^{key}=(.*)$", unit_text, re.M)]
    return values[-1] if values else None


def check(deploy):
    k8s = deploy / "k8s"
    toml_text = (deploy / "wsgate.toml").read_text()
    config = tomllib.loads(toml_text)
    drain = config.get("serve", {}).get("drain-timeout", DEFAULT_DRAIN_TIMEOUT)

    # The ConfigMap carries the same file.
    (configmap,) = docs(k8s / "configmap.yaml")
    embedded = configmap.get("data", {}).get("wsgate.toml")
    if embedded != toml_text:
        fail("k8s/configmap.yaml: data.wsgate.toml differs from wsgate.toml (indent wsgate.toml by 4 spaces under `wsgate.toml: |`)")

    # The kustomization lists every manifest.
    (kustomization,) = docs(k8s / "kustomization.yaml")
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(present - listed):
        fail(f"k8s/kustomization.yaml: {name} is not among its resources")
    for name in sorted(listed - present):
        fail(f"k8s/kustomization.yaml: lists {name}, which is not in k8s/")

    # The Deployment against wsgate.toml.
    (deployment,) = docs(k8s / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    if not labels_match(deployment["spec"]["selector"]["matchLabels"], pod_labels):
        fail("k8s/deployment.yaml: its selector does not match its pods' labels")
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    admin = config.get("admin", {}).get("listen")
    if admin is None:
        fail("wsgate.toml: no [admin] listen, which the probes need")
    elif ports.get("admin") != port_of(admin):
        fail(f"k8s/deployment.yaml: port `admin` is {ports.get('admin')}, wsgate.toml's [admin] listen is {admin}")
    listeners = [port_of(l["address"]) for l in config.get("listener", [])]
    if ports.get("ws") not in listeners:
        fail(f"k8s/deployment.yaml: port `ws` is {ports.get('ws')}, not a [[listener]] of wsgate.toml ({listeners})")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if probe != "startupProbe" or probe in container:
            if get.get("path") != path or get.get("port") != "admin":
                fail(f"k8s/deployment.yaml: {probe} should GET {path} on port `admin`, not {get}")
    args = container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_dir, _, config_file = (config_path or "").rpartition("/")
    volume = volumes.get(mounts.get(config_dir), {})
    items = {i["path"]: i["key"] for i in volume.get("configMap", {}).get("items", [])}
    if volume.get("configMap", {}).get("name") != configmap["metadata"]["name"] or items.get(config_file) != "wsgate.toml":
        fail(f"k8s/deployment.yaml: --config {config_path} is not the ConfigMap's wsgate.toml")
    cache = args[args.index("--cache-dir") + 1] if "--cache-dir" in args else None
    if cache not in mounts:
        fail(f"k8s/deployment.yaml: --cache-dir {cache} is not a mounted volume (the root filesystem is read-only)")
    memory_file = config.get("race", {}).get("memory-file")
    if memory_file and str(pathlib.PurePosixPath(memory_file).parent) not in mounts:
        fail(f"k8s/deployment.yaml: the race memory file {memory_file} is not on a mounted volume")
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_secs = int(pre_stop[1]) if pre_stop[:1] == ["/bin/sleep"] and len(pre_stop) == 2 else None
    if pre_stop_secs is None:
        fail(f"k8s/deployment.yaml: preStop should be [/bin/sleep, SECONDS], not {pre_stop}")
    else:
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= pre_stop_secs + drain:
            fail(f"k8s/deployment.yaml: terminationGracePeriodSeconds {grace} is not above preStop {pre_stop_secs} s + drain-timeout {drain} s")

    # Services, PodDisruptionBudget and ServiceMonitor find the pods.
    services = docs(k8s / "service.yaml")
    for service in services:
        name = service["metadata"]["name"]
        if not labels_match(service["spec"]["selector"], pod_labels):
            fail(f"k8s/service.yaml: Service {name} does not select the Deployment's pods")
        for port in service["spec"]["ports"]:
            if port.get("targetPort") not in ports:
                fail(f"k8s/service.yaml: Service {name} targets port {port.get('targetPort')}, which the pods do not name")
    (pdb,) = docs(k8s / "pdb.yaml")
    if not labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels):
        fail("k8s/pdb.yaml: its selector does not match the Deployment's pods")
    (monitor,) = docs(k8s / "servicemonitor.yaml")
    selected = [s for s in services if labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
    if len(selected) != 1:
        fail(f"k8s/servicemonitor.yaml: selects {len(selected)} Services, not one")
    for endpoint in monitor["spec"]["endpoints"]:
        named = {p.get("name") for s in selected for p in s["spec"]["ports"]}
        if endpoint.get("port") not in named:
            fail(f"k8s/servicemonitor.yaml: port {endpoint.get('port')} is not named by the Service it selects")
        if endpoint.get("path", "/metrics") != "/metrics":
            fail("k8s/servicemonitor.yaml: wsgate's metrics are at /metrics")

    # The systemd unit waits out the drain.
    unit = (deploy / "wsgate.service").read_text()
    stop = systemd_value(unit, "TimeoutStopSec")
    if stop is None or seconds(stop) <= drain:
        fail(f"wsgate.service: TimeoutStopSec={stop} is not above drain-timeout {drain} s")
    if systemd_value(unit, "MemoryDenyWriteExecute") not in (None, "no"):
        fail("wsgate.service: MemoryDenyWriteExecute would stop wasmtime's compiled code")


def rewrite_config(deploy, out, plugin_dir, state_dir):
    """wsgate.toml for a test start: loopback, this machine's plugins."""
    text = (deploy / "wsgate.toml").read_text()
    text, n = re.subn(r'^(listen|address)\s*=\s*"[^"]*"', r'\1 = "127.0.0.1:0"', text, flags=re.M)
    text = re.sub(r'^(plugin\s*=\s*)"[^"]*/([^"/]+)"', lambda m: f'{m.group(1)}"{plugin_dir}/{m.group(2)}"', text, flags=re.M)
    text = re.sub(r'^(memory-file\s*=\s*)"[^"]*/([^"/]+)"', lambda m: f'{m.group(1)}"{state_dir}/{m.group(2)}"', text, flags=re.M)
    rewritten = tomllib.loads(text)
    addresses = [rewritten.get("admin", {}).get("listen")] + [l.get("address") for l in rewritten.get("listener", [])]
    if any(a not in (None, "127.0.0.1:0") for a in addresses):
        fail(f"wsgate.toml: an address was left unrewritten for the test start: {addresses}")
    pathlib.Path(out).write_text(text)


def main(argv):
    deploy = pathlib.Path(argv[1])
    try:
        check(deploy)
        if len(argv) == 6 and argv[2] == "--rewrite-config":
            rewrite_config(deploy, *argv[3:])
    except (KeyError, ValueError, TypeError, IndexError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        fail(f"cannot read the manifests: {type(e).__name__}: {e}")
    for line in failures:
        print(f"deploy-check: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
