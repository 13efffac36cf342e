"""What each subnet task serves, and which kinds of model can serve it."""

from __future__ import annotations

from services.common.errors import InvalidRequest

# task name -> the Miner calls it serves (the others answer UNIMPLEMENTED)
TASK_METHODS: dict[str, tuple[str, ...]] = {
    "next-token": ("NextWord", "Generate"),
    "translation": ("Translate", "Generate"),
    "embedding": ("Embed",),
}
# task name -> kinds of model (see services.miner.sources.ModelSource.kind) that can serve it
TASK_MODEL_KINDS: dict[str, frozenset[str]] = {
    "next-token": frozenset({"causal", "toy"}),
    "translation": frozenset({"causal", "toy"}),
    "embedding": frozenset({"encoder", "toy"}),
}
# the default model of each task when the operator names none
DEFAULT_MODELS: dict[str, str] = {"next-token": "smollm2-135m", "translation": "gemma3-270m", "embedding": "minilm-l6"}


def check_task(task: str) -> str:
    if task not in TASK_METHODS:
        raise InvalidRequest(f"task {task!r} is not one of {', '.join(TASK_METHODS)}")
    return task


def check_model_kind(task: str, kind: str, model: str) -> None:
    if kind not in TASK_MODEL_KINDS[check_task(task)]:
        raise InvalidRequest(
            f"model {model!r} is a {kind} model; task {task} needs one of {', '.join(sorted(TASK_MODEL_KINDS[task]))}"
        )
