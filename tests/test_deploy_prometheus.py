"""deploy/prometheus and deploy/grafana, checked by Prometheus' own tools and a real Prometheus server.

promtool checks both scrape configurations and the alert rules and runs the rules' unit tests
(alerts_test.yml). A real `prometheus` (Debian's package), started by the test on a free port,
scrapes a real chain node, evaluates alerts.yml against it and answers every dashboard query.

Debian builds Prometheus without Kubernetes service discovery, so the Kubernetes scrape
configuration is run with its `kubernetes_sd_configs` swapped for file-based discovery fed the
labels Kubernetes discovery gives the pods of the rendered dev overlay: the relabelling, job names
and target labels under test are the file's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.chain.main import ChainNode
from services.common.redis_server import RedisServer, free_port
from tests.conftest import chain_settings
from tests.test_deploy import app_name, k8s_copy_with_dev_secrets, kubectl, render, workloads

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "agora-dashboard.json"
INSTALL = "apt-get install -y --no-install-recommends prometheus"
# what Grafana puts in place of the dashboard's variables
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$subnet": ".*"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: `{INSTALL}` (Debian's package ships prometheus and promtool)")
    return path


def promtool(*args: str, cwd: Path = PROM) -> None:
    out = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}{out.stderr}"


def with_file_sd(config: dict, targets_file: Path) -> dict:
    """The Kubernetes scrape configuration with each `kubernetes_sd_configs` replaced by file discovery."""
    config = copy.deepcopy(config)
    swapped = 0
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
            job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
            swapped += 1
    assert swapped == 4
    config["rule_files"] = [str(PROM / f) for f in config["rule_files"]]
    return config


# --- promtool ----------------------------------------------------------------------------------------------

def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool("check", "rules", "alerts.yml")
    promtool("test", "rules", "alerts_test.yml")
    names = {r["alert"] for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert {"AgoraChainNotProducingBlocks", "AgoraValidatorNotSettingWeights", "AgoraMinerHighErrorRate",
            "AgoraRedisDown"} <= names
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "alerts_test.yml").read_text()))
    assert names - tested <= {"AgoraTargetDown"}, f"alerts without a unit test: {names - tested}"


def test_scrape_configurations_pass_promtool_check_config(tmp_path: Path) -> None:
    promtool("check", "config", "prometheus-local.yml")
    # Debian's promtool does not know kubernetes_sd_configs (left out of its build); everything else is checked
    config = with_file_sd(yaml.safe_load((PROM / "prometheus.yml").read_text()), tmp_path / "targets.json")
    (tmp_path / "targets.json").write_text("[]")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool("check", "config", str(tmp_path / "prometheus.yml"), cwd=tmp_path)


# --- the Grafana dashboard -------------------------------------------------------------------------------------

def dashboard_panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) with Grafana's variables filled in."""
    out = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            out.append((panel["title"], expr))
    return out


def test_dashboard_has_the_network_panels_on_a_valid_grid() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "agora-network" and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "namespace", "subnet"}
    for panel in dashboard_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"] and all(t["refId"] for t in panel["targets"])
    text = " ".join(expr for _, expr in dashboard_queries())
    for needed in ("agora_chain_block_height", "agora_chain_extrinsics_total",
                   "agora_chain_epoch_duration_seconds_bucket", "agora_chain_emission_total", "agora_validator_score",
                   "agora_validator_weights_set_total", "agora_validator_last_weights_timestamp_seconds",
                   'job="agora-miner"'):
        assert needed in text, needed
    miner_latency = [e for _, e in dashboard_queries()
                     if "grpc_server_handling_seconds_bucket" in e and "agora-miner" in e]
    assert any(e.startswith("histogram_quantile(0.5,") for e in miner_latency)
    assert any(e.startswith("histogram_quantile(0.99,") for e in miner_latency)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_queries())]
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", str(tmp_path / "dashboard-rules.yml"), cwd=tmp_path)


# --- a real Prometheus server ------------------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never through a proxy


def _get_json(url: str) -> Any:
    with _OPENER.open(url, timeout=5) as reply:
        return json.load(reply)


async def api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    reply = await asyncio.to_thread(_get_json, f"{url}/api/v1/{path}{query}")
    assert reply["status"] == "success", reply
    return reply["data"]


async def instant(url: str, expr: str) -> list[dict]:
    return (await api(url, "query", query=expr))["result"]


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def prometheus_server(config: dict, workdir: Path) -> AsyncIterator[str]:
    """The `prometheus` binary on a free loopback port with `config`; yields its base URL."""
    binary = tool("prometheus")
    port = free_port()
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        assert proc.poll() is None, (workdir / "prometheus.log").read_text()
        try:
            await asyncio.to_thread(lambda: _OPENER.open(f"{url}/-/ready", timeout=2).close())
            return True
        except OSError:
            return False

    try:
        await eventually(ready, "prometheus to be ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


async def rules_evaluated(url: str) -> list[dict]:
    rules = [r for g in (await api(url, "rules"))["groups"] for r in g["rules"]]
    return rules if rules and all(r["health"] != "unknown" for r in rules) else []


@contextlib.asynccontextmanager
async def start_chain(redis_server: RedisServer) -> AsyncIterator[int]:
    node = ChainNode(chain_settings(redis_server))
    await node.start()
    try:
        yield node.server.metrics_port
    finally:
        await node.stop()


@contextlib.asynccontextmanager
async def start_miner(redis_server: RedisServer) -> AsyncIterator[int]:
    """An offline miner serving the echo toy: its metrics are the same as a real model's."""
    from services.common.keys import dev_keypair
    from services.miner.main import Miner
    from services.miner.settings import MinerSettings

    miner = Miner(MinerSettings(model="echo", port=0, metrics_port=0, warm_up=False),
                  hotkey=dev_keypair("MinerForPrometheus"))
    await miner.start()
    try:
        await miner.ready()
        yield miner.server.metrics_port
    finally:
        await miner.stop()


@contextlib.asynccontextmanager
async def start_validator(redis_server: RedisServer) -> AsyncIterator[int]:
    """A validator on a fresh chain and subnet with an oracle, an echo and a noise miner: it scores
    rounds and sets weights, so its weights timestamp (what the alert watches) is exported."""
    from services.validator.items import Task
    from services.validator.main import Validator
    from tests.test_validator import PAYEE, VALIDATOR, Oracle, make_net, write_data

    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp))
        async for net in make_net(redis_server, data):
            await net.add_miners([Oracle(data), "echo", "noise"])
            validator = Validator(net.settings(metrics_port=0), hotkey=VALIDATOR, coldkey=PAYEE,
                                  data=data[Task.NEXT_TOKEN])
            await validator.start()
            try:
                yield validator.server.metrics_port
            finally:
                await validator.stop()


# Job -> (an async context manager that runs the service on 127.0.0.1 and yields its metrics port,
# a metric it exports once it works).
Starter = Callable[[RedisServer], contextlib.AbstractAsyncContextManager[int]]
SCRAPE_TARGETS: dict[str, tuple[Starter | None, str]] = {
    "agora-chain": (start_chain, "agora_chain_block_height"),
    "agora-miner": (start_miner, "agora_miner_model_loaded"),
    "agora-validator": (start_validator, "agora_validator_last_weights_timestamp_seconds"),
}


def local_config(job: str, metrics_port: int) -> dict:
    """deploy/prometheus/prometheus-local.yml with `job` pointed at the running service, scraping every second."""
    config = yaml.safe_load((PROM / "prometheus-local.yml").read_text())
    (scrape,) = [s for s in config["scrape_configs"] if s["job_name"] == job]
    scrape["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    config["scrape_configs"] = [scrape]
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROM / f) for f in config["rule_files"]]
    return config


@pytest.mark.parametrize("job", list(SCRAPE_TARGETS))
async def test_real_prometheus_scrapes_the_service_and_evaluates_the_alert_rules(
    job: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    starter, metric = SCRAPE_TARGETS[job]
    if starter is None:
        pytest.skip(f"no {job} service to start yet: add its starter to SCRAPE_TARGETS")
    tool("prometheus")
    async with (
        starter(redis_server) as metrics_port,
        prometheus_server(local_config(job, metrics_port), tmp_path) as url,
    ):
        async def scraped() -> list[dict]:
            return await instant(url, f'{metric}{{job="{job}"}}')

        series = await eventually(scraped, f"{metric} from {job}")
        assert series[0]["metric"]["instance"] == f"127.0.0.1:{metrics_port}"
        assert [s["value"][1] for s in await instant(url, f'up{{job="{job}"}}')] == ["1"]
        if job == "agora-chain":
            first = float(series[0]["value"][1])

            async def grew() -> bool:
                return float((await scraped())[0]["value"][1]) > first

            await eventually(grew, "the block height to grow between scrapes")
        rules = await eventually(lambda: rules_evaluated(url), "every alert rule to be evaluated")
        assert {r["name"]: r["health"] for r in rules if r["health"] != "ok"} == {}
        if job == "agora-chain":
            # right after start one sample shows no change yet (pending, held back by `for`); then blocks
            # seen moving clear it, and no alert about the chain is pending or firing
            chain_alerts = ("AgoraChainNotProducingBlocks", "AgoraChainNoProducer", "AgoraChainDown")

            async def chain_alerts_quiet() -> bool:
                states = {r["name"]: r["state"] for r in await rules_evaluated(url)}
                return all(states.get(a) == "inactive" for a in chain_alerts)

            await eventually(chain_alerts_quiet, f"{chain_alerts} to be inactive")
            # every dashboard query runs against real data, and the chain's panels show it
            for title, expr in dashboard_queries():
                result = await instant(url, expr)
                if "agora_chain_block_height" in expr and "deriv" not in expr:
                    assert result, f"{title}: {expr} returned nothing"


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def kubernetes_pod_targets(objs: list[dict], address: Callable[[str, dict], str]) -> list[dict]:
    """What Prometheus' Kubernetes pod discovery yields for these workloads: a target per container port."""
    groups = []
    for obj in workloads(objs):
        template = obj["spec"]["template"]
        for i in range(obj["spec"].get("replicas", 1)):
            pod = {"__meta_kubernetes_namespace": obj["metadata"]["namespace"],
                   "__meta_kubernetes_pod_name": f"{obj['metadata']['name']}-{i}",
                   "__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_pod_ready": "true"}
            for key, value in template["metadata"].get("labels", {}).items():
                pod[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
                pod[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
            for key, value in template["metadata"].get("annotations", {}).items():
                pod[f"__meta_kubernetes_pod_annotation_{sanitize(key)}"] = value
                pod[f"__meta_kubernetes_pod_annotationpresent_{sanitize(key)}"] = "true"
            for container in template["spec"]["containers"]:
                for port in container.get("ports", []):
                    groups.append({"targets": [address(app_name(obj), port)], "labels": {
                        **pod, "__meta_kubernetes_pod_container_name": container["name"],
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                        "__meta_kubernetes_pod_container_port_protocol": "TCP",
                    }})
    return groups


async def test_kubernetes_scrape_config_keeps_exactly_the_metrics_port_of_every_agora_pod(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    kubectl()
    tool("prometheus")
    dev = render(k8s_copy_with_dev_secrets(tmp_path) / "overlays" / "dev")
    closed = free_port()   # nothing listens there: every other pod is discovered but down
    async with start_chain(redis_server) as chain_metrics:
        def address(kind: str, port: dict) -> str:
            return f"127.0.0.1:{chain_metrics if (kind, port['name']) == ('chain', 'metrics') else closed}"

        (tmp_path / "targets.json").write_text(json.dumps(kubernetes_pod_targets(dev, address)))
        config = with_file_sd(yaml.safe_load((PROM / "prometheus.yml").read_text()), tmp_path / "targets.json")
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        config["scrape_configs"] = [s for s in config["scrape_configs"] if s["job_name"] != "prometheus"]
        async with prometheus_server(config, tmp_path) as url:
            async def discovered() -> list[dict]:
                targets = (await api(url, "targets"))["activeTargets"]
                return targets if len(targets) >= 13 else []

            targets = await eventually(discovered, "the pods' targets")
            found = sorted((t["labels"]["job"], t["labels"]["pod"], t["labels"].get("subnet", ""),
                            t["scrapeUrl"].rsplit(":", 1)[1]) for t in targets)
            jobs = {"chain": "agora-chain", "miner": "agora-miner", "validator": "agora-validator", "redis": "redis"}
            expected = sorted(
                (jobs[app_name(o)], f"{o['metadata']['name']}-{i}",
                 o["spec"]["template"]["metadata"]["labels"].get("agora/netuid", ""),
                 f"{chain_metrics if app_name(o) == 'chain' else closed}/metrics")
                for o in workloads(dev) for i in range(o["spec"].get("replicas", 1))
            )
            assert found == expected
            assert all(t["labels"]["namespace"] == "agora-dev" and t["labels"]["neuron"] for t in targets)

            async def both_chain_pods() -> list[dict]:
                result = await instant(url, 'agora_chain_block_height{job="agora-chain",namespace="agora-dev"}')
                return result if len(result) == 2 else []

            series = await eventually(both_chain_pods, "both chain replicas' block height")
            assert {s["metric"]["pod"] for s in series} == {"agora-chain-0", "agora-chain-1"}
            assert {s["metric"]["neuron"] for s in series} == {"agora-chain"}
