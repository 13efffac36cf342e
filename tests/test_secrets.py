"""Secrets stay secret: coldkeys are encrypted on disk; no password, mnemonic or private key shows in
a log, a /metrics page, an error message or a CLI's output; Redis requires a password, in tests of
the real services and in the deployment.

Every secret is searched for in the forms it would leak in: a password as is, a mnemonic whole and
as any three consecutive words, a key as 16-byte slices of its private key and seed in hex.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from bittensor_wallet import Keypair

from services.chain.settings import ChainSettings
from services.common import keys
from services.common.errors import Unauthenticated
from services.common.redis_server import RedisServer, free_port
from services.validator.settings import ValidatorSettings
from tests import bad_input
from tests.bad_input import MINER_HOTKEYS, POOR, VALIDATOR, open_world

_SCRIPT = Path(sys.executable).with_name("agora")
AGORA = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "services.cli.main"]
BOB = keys.dev_keypair("Bob")


# ---- what a leak looks like ----

def key_forms(keypair: Keypair, scratch: Path) -> list[str]:
    """16-byte hex slices of the key's private key and seed, read from an unencrypted keyfile of it."""
    w = keys.wallet("probe", "key", scratch)
    with keys.quiet_stdout():
        w.set_hotkey(keypair, encrypt=False, overwrite=True)
    data = json.loads(Path(w.hotkey_file.path).read_text())
    forms = []
    for name in ("privateKey", "secretSeed"):
        value = (data.get(name) or "").removeprefix("0x").lower()
        forms += [value[i:i + 32] for i in range(0, len(value), 32) if len(value[i:i + 32]) == 32]
    assert forms, "the probe keyfile holds no private key"
    return forms


def mnemonic_forms(mnemonic: str) -> list[str]:
    words = mnemonic.split()
    return [mnemonic, *(" ".join(words[i:i + 3]) for i in range(len(words) - 2))]


def leaks(text: str | bytes, secret_forms: Iterable[str]) -> list[str]:
    haystack = (text.decode(errors="replace") if isinstance(text, bytes) else text).lower()
    return [form for form in secret_forms if form.lower() in haystack]


# ---- the CLI's wallets ----

def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGORA_", "BT_"))}
    return env | {"HOME": str(tmp_path), "AGORA_WALLET_PATH": str(tmp_path / "wallets"),
                  "AGORA_CACHE_DIR": str(tmp_path / "cache")} | extra


async def agora(*args: str, env: dict[str, str], stdin: bytes = b"") -> tuple[int, str]:
    """Exit code and stdout + stderr together."""
    proc = await asyncio.create_subprocess_exec(*AGORA, *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env=env, start_new_session=True)
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture
async def coldkey(tmp_path: Path) -> tuple[str, str, Keypair]:
    """A wallet `w` made by `agora wallet new-coldkey`: (password, mnemonic, keypair)."""
    password = "pw-" + secrets.token_urlsafe(18)
    code, out = await agora("wallet", "new-coldkey", "--wallet.name", "w", "--json",
                            env=cli_env(tmp_path, AGORA_COLDKEY_PASSWORD=password))
    assert code == 0, out
    made = json.loads(out)
    assert made["encrypted"] is True
    return password, made["mnemonic"], Keypair.create_from_mnemonic(made["mnemonic"])


async def test_a_new_coldkey_is_encrypted_on_disk_and_holds_no_secret_in_the_clear(tmp_path: Path, coldkey):
    password, mnemonic, keypair = coldkey
    forms = [password, *mnemonic_forms(mnemonic), *key_forms(keypair, tmp_path / "scratch")]
    folder = tmp_path / "wallets" / "w"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert {p.name for p in files} == {"coldkey", "coldkeypub.txt"}
    for path in files:
        assert leaks(path.read_bytes(), forms) == [], path
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    raw = (folder / "coldkey").read_bytes()
    assert raw.startswith(b"$NACL") and keys.wallet("w", path=tmp_path / "wallets").coldkey_file.is_encrypted()
    assert json.loads((folder / "coldkeypub.txt").read_text())["ss58Address"] == keypair.ss58_address
    # the file is the key: the password opens it, another does not and is not repeated in the refusal
    w = keys.wallet("w", path=tmp_path / "wallets")
    assert keys.unlock_coldkey(w, password).ss58_address == keypair.ss58_address
    wrong = "wrong-" + secrets.token_urlsafe(12)
    with pytest.raises(Unauthenticated) as err:
        keys.unlock_coldkey(w, wrong)
    assert leaks(str(err.value), [wrong, password]) == []


async def test_failing_cli_commands_never_echo_a_password_a_mnemonic_or_a_key(tmp_path: Path, coldkey, chain):
    password, mnemonic, keypair = coldkey
    wrong = "wrong-" + secrets.token_urlsafe(12)
    forms = [password, wrong, *mnemonic_forms(mnemonic), *key_forms(keypair, tmp_path / "scratch")]
    target = f"127.0.0.1:{chain.server.port}"
    nobody = f"127.0.0.1:{free_port()}"
    words = mnemonic.split()
    garbled = " ".join([*words[:-1], "zzzz"])
    transfer = ["wallet", "transfer", "--wallet.name", "w", "--dest", BOB.ss58_address, "--amount", "0.5"]
    runs = [   # (argv, password in the environment, the code the one error line names)
        ([*transfer, "--chain", target], wrong, "UNAUTHENTICATED"),
        ([*transfer, "--chain", target], password, "FAILED_PRECONDITION"),     # unfunded
        ([*transfer, "--chain", nobody], password, "UNAVAILABLE"),
        (["wallet", "regen-coldkey", "--wallet.name", "w2", "--mnemonic", garbled], password, "INVALID_ARGUMENT"),
        (["wallet", "new-coldkey", "--wallet.name", "w"], password, "ALREADY_EXISTS"),
        (["wallet", "new-coldkey", "--wallet.name", "w3"], "", "INVALID_ARGUMENT"),   # an empty password
        (["wallet", "balance", "--wallet.name", "w", "--chain", nobody], password, "UNAVAILABLE"),
    ]
    for argv, env_password, code_name in runs:
        code, out = await agora(*argv, env=cli_env(tmp_path, AGORA_COLDKEY_PASSWORD=env_password))
        assert code == 1 and f"error: {code_name}: " in out, (argv, out)
        assert "Traceback" not in out and leaks(out, forms) == [], (argv, out)
    # and what succeeds: restoring from the mnemonic, listing, a balance
    for argv in (["wallet", "regen-coldkey", "--wallet.name", "w4", "--mnemonic", mnemonic, "--json"],
                 ["wallet", "list", "--json"], ["wallet", "balance", "--wallet.name", "w", "--chain", target]):
        code, out = await agora(*argv, env=cli_env(tmp_path, AGORA_COLDKEY_PASSWORD=password))
        assert code == 0 and leaks(out, forms) == [], (argv, out)
    assert keys.wallet("w4", path=tmp_path / "wallets").coldkey_file.is_encrypted()


# ---- the services ----

@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterable[RedisServer]:
    """A redis-server of its own that requires a password, as the deployment's does."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("locked-redis"), appendonly=False,
                         password="redis-" + secrets.token_hex(16)).start()
    yield server
    server.stop()


def redis_url(server: RedisServer, password: str | None) -> str:
    auth = f":{password}@" if password is not None else ""
    return f"redis://{auth}127.0.0.1:{server.port}/0"


async def test_redis_refuses_a_client_without_the_password(locked_redis: RedisServer):
    for password in (None, "not-" + locked_redis.password):   # type: ignore[operator]
        client = aioredis.from_url(redis_url(locked_redis, password))
        with pytest.raises(redis.exceptions.AuthenticationError) as err:
            await client.set("k", "v")
        await client.aclose()
        assert locked_redis.password not in str(err.value)
    client = aioredis.from_url(locked_redis.url)
    assert await client.ping()
    await client.aclose()


@pytest.fixture
async def locked_world(locked_redis: RedisServer, tmp_path: Path, caplog) -> AsyncIterator[bad_input.World]:
    caplog.set_level(logging.DEBUG)   # from the start: what the services log while they come up counts too
    async with open_world(locked_redis.url, tmp_path / "world") as w:
        yield w


async def test_services_keep_secrets_out_of_logs_metrics_and_errors(
        locked_redis: RedisServer, locked_world: bad_input.World, tmp_path: Path, caplog, capfd):
    world = locked_world
    assert locked_redis.password
    forms = [locked_redis.password]
    for key in (VALIDATOR, POOR, *MINER_HOTKEYS.values()):
        forms += key_forms(key, tmp_path / "scratch")
    # bad input of every kind to every method, forged and replayed requests among it: the error paths
    result = await bad_input.sweep(world.targets(), per_category=2)
    assert result.total > 200 and not result.failures
    details = "\n".join(result.details)
    metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{world.node.server.metrics_port}/metrics", timeout=5).read().decode())
    assert "agora_miner_requests_total" in metrics   # one registry per process: every service's metrics
    captured = capfd.readouterr()
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")   # with tracebacks, if any
    logs = "\n".join(formatter.format(r) for phase in ("setup", "call") for r in caplog.get_records(phase))
    for where, text in (("error details", details), ("logs", logs), ("metrics", metrics),
                        ("stdout", captured.out), ("stderr", captured.err),
                        ("settings", repr(world.node.settings) + repr(world.validator.settings)
                         + repr(ValidatorSettings(redis_url=locked_redis.url)))):
        assert leaks(text, forms) == [], where
    # what was searched is the real thing: the services' own start-up lines and refusal messages
    assert "serving gRPC" in logs and "agora.miner" in logs and len(details) > 10_000


async def test_the_chain_process_never_logs_the_redis_password(locked_redis: RedisServer, tmp_path: Path):
    password = locked_redis.password
    assert password
    env = cli_env(tmp_path, AGORA_LOG_LEVEL="DEBUG")
    port, metrics_port = free_port(), free_port()
    start = ["chain", "start", "--network", f"secrets-{secrets.token_hex(4)}", "--port", str(port),
             "--metrics-port", str(metrics_port), "--block-time-ms", "100", "--dev"]
    wrong = "not-" + password
    for url in (redis_url(locked_redis, wrong), redis_url(locked_redis, None)):
        code, out = await agora(*start, "--redis-url", url, env=env)
        assert code == 1 and "error: UNAVAILABLE: " in out, out
        assert leaks(out, [password, wrong]) == [], out
    proc = await asyncio.create_subprocess_exec(*AGORA, *start, "--redis-url", locked_redis.url,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env, start_new_session=True)
    try:
        assert proc.stderr is not None
        lines = []
        while not any("serving gRPC" in line for line in lines):
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode())
        assert "agora_chain_block_height" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = "".join(lines) + err.decode() + out.decode()
    assert proc.returncode == 0, text[-2000:]
    assert re.search(r"redis://:\*\*\*@127\.0\.0\.1", text), "the log should name the Redis it uses, masked"
    assert leaks(text + metrics, [password]) == []
    assert password not in repr(ChainSettings(redis_url=locked_redis.url))


def test_in_process_chain_settings_print_the_redis_password_as_stars(locked_redis: RedisServer):
    settings = ChainSettings(redis_url=locked_redis.url)
    assert locked_redis.password not in repr(settings) and locked_redis.password not in str(settings)
    assert settings.redis_url == locked_redis.url   # masked in print only: the node connects with it


# ---- the deployment ----

def test_deployed_redis_requires_a_password_that_only_a_secret_holds():
    from tests.test_deploy import K8S, app_name, load_docs, render, workloads

    objs = render(K8S / "base")
    assert not [o for o in objs if o["kind"] == "Secret"], "the base must hold no Secret: overlays provide them"
    from_secret = {"secretKeyRef": {"name": "agora-redis", "key": "password"}}
    (sts,) = [o for o in workloads(objs) if app_name(o) == "redis"]
    containers = {c["name"]: c for c in sts["spec"]["template"]["spec"]["containers"]}
    server = containers["redis"]
    assert {"name": "REDIS_PASSWORD", "valueFrom": from_secret} in server["env"]
    assert re.search(r"requirepass \"%s\"\\n' \"\$REDIS_PASSWORD\"", server["args"][0]), server["args"][0]
    for obj in objs:   # no password, or a commented-out requirepass only, in any ConfigMap
        for value in (obj.get("data") or {}).values() if obj["kind"] == "ConfigMap" else ():
            assert not re.search(r"^\s*requirepass\s", value, re.MULTILINE)
            assert not re.search(r"rediss?://[^/\s]*@", value), value
    users = set()
    for obj in workloads(objs):
        spec = obj["spec"]["template"]["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            seen: list[str] = []
            for e in c.get("env", []):
                value = e.get("value") or ""
                if e["name"] == "REDIS_PASSWORD":
                    assert e == {"name": "REDIS_PASSWORD", "valueFrom": from_secret}, (obj["metadata"]["name"], e)
                if e["name"] == "REDIS_ADDR":   # the exporter: the address here, the password from the Secret
                    assert "@" not in value and {"name": "REDIS_PASSWORD", "valueFrom": from_secret} in c["env"]
                elif "redis://" in value:
                    users.add(obj["metadata"]["name"])
                    # Kubernetes expands $(VAR) only from variables defined earlier in the same list
                    assert re.match(r"rediss?://:\$\(REDIS_PASSWORD\)@", value) and "REDIS_PASSWORD" in seen, (
                        obj["metadata"]["name"], c["name"], value)
                seen.append(e["name"])
            for arg in [*c.get("command", []), *c.get("args", [])]:
                assert not re.search(r"rediss?://[^$\s]*@", arg), (obj["metadata"]["name"], arg)
    agora_apps = {o["metadata"]["name"] for o in workloads(objs) if app_name(o) in ("chain", "miner", "validator")}
    assert agora_apps and users == agora_apps, "every Agora process reaches Redis with the password"
    # the dev overlay generates the Secret from a file bootstrap.sh writes (git-ignored), never a literal
    (kustomization,) = load_docs(K8S / "overlays" / "dev" / "kustomization.yaml")
    (generated,) = [g for g in kustomization["secretGenerator"] if g["name"] == "agora-redis"]
    assert generated["files"] == ["password=secrets/redis-password"] and "literals" not in generated
