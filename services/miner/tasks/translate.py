"""Translation with a causal LM, few-shot prompted: a few parallel sentences, then the source.

    English: Where is the train station?
    French: Où est la gare ?

    English: <source>
    French:            <- the model continues; the line it writes is the translation
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.errors import InvalidRequest
from services.miner.tasks.generate import generate

LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
TARGETS = ("fr", "de", "es")

# The same short sentences in every language, so any pair of languages has examples.
_EXAMPLES: list[dict[str, str]] = [
    {
        "en": "Where is the train station?",
        "fr": "Où est la gare ?",
        "de": "Wo ist der Bahnhof?",
        "es": "¿Dónde está la estación de tren?",
    },
    {
        "en": "The weather is nice today, so we are going to the park.",
        "fr": "Il fait beau aujourd'hui, alors nous allons au parc.",
        "de": "Das Wetter ist heute schön, also gehen wir in den Park.",
        "es": "Hoy hace buen tiempo, así que vamos al parque.",
    },
    {
        "en": "I would like a cup of coffee, please.",
        "fr": "Je voudrais une tasse de café, s'il vous plaît.",
        "de": "Ich hätte gern eine Tasse Kaffee, bitte.",
        "es": "Quisiera una taza de café, por favor.",
    },
    {
        "en": "The file could not be opened because it does not exist.",
        "fr": "Le fichier n'a pas pu être ouvert car il n'existe pas.",
        "de": "Die Datei konnte nicht geöffnet werden, da sie nicht existiert.",
        "es": "No se pudo abrir el archivo porque no existe.",
    },
]

MAX_NEW_TOKENS = 256


def check_languages(source: str, target: str) -> tuple[str, str]:
    source, target = (source or "en").lower(), target.lower()
    if target not in TARGETS:
        raise InvalidRequest(f"target language {target!r} is not one of {', '.join(TARGETS)}")
    if source not in LANGUAGES:
        raise InvalidRequest(f"source language {source!r} is not one of {', '.join(LANGUAGES)}")
    if source == target:
        raise InvalidRequest(f"source and target language are both {source!r}")
    return source, target


def prompt(sentence: str, source: str, target: str) -> str:
    src, tgt = LANGUAGES[source], LANGUAGES[target]
    shots = "".join(f"{src}: {ex[source]}\n{tgt}: {ex[target]}\n\n" for ex in _EXAMPLES)
    return f"{shots}{src}: {' '.join(sentence.split())}\n{tgt}:"


def translate(model, tokenizer, sentences: Sequence[str], source: str, target: str) -> list[str]:
    source, target = check_languages(source, target)
    prompts = [prompt(s, source, target) for s in sentences]
    longest = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences)
    budget = min(MAX_NEW_TOKENS, 2 * longest + 8)
    outputs = generate(model, tokenizer, prompts, budget, 0.0, stop_at_newline=True)
    return [out.split("\n", 1)[0].strip() for out in outputs]
