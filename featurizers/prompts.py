"""Prompt templates for the generative featurizers, as named, versioned strings.

``PROMPTS`` maps a name to a :class:`Prompt` (name, version, text). Templates may use the
placeholders ``{title}``, ``{tags}``, ``{comments}``, ``{description}`` and ``{text}`` (the item's
text fields assembled into labelled lines); a placeholder the item does not have renders as an
empty string (``{text}`` as ``(no text)``), so a template never raises on a missing field.

A manifest names a template (``prompt: video_summary``) or gives its own text under its own key
(``prompt_text: "Describe ..."``), never both. Keeping them apart is what makes a typo an error:
``prompt: product_imgae`` names no template, so it fails with the closest registered name instead
of silently becoming a one-word prompt. Either way the **full text** goes into the featurizer's
fingerprint, so editing a template (or bumping its version) makes a new feature version; a custom
text is recorded as ``{"name": "custom", "version": 1, "text": ...}``.

Sources of the built-in templates:

- ``product_image``: the item-profile prompt used by LLM-/MLLM-augmented multimodal recommenders
  (LIRDRec, CM3): a factual description of the product in the image (category, appearance,
  material, style, use) so the text can be embedded next to the title.
- ``video_summary``: the "Describe What You See" prompt from MicroLens, asking an MLLM for what
  happens in the clip, its mood, the creator's intent, any humour, and the world knowledge needed
  to understand it.
- ``text_only_item``: the same kind of profile for items that have only text (title, tags,
  comments); the describer that uses it never sees pixels.
"""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass
from typing import Any, Mapping

#: Item text fields that templates may reference (in the order ``{text}`` lists them).
TEXT_FIELDS = ("title", "tags", "description", "comments")


@dataclass(frozen=True)
class Prompt:
    """A named prompt template; ``version`` is bumped whenever ``text`` changes meaningfully."""

    name: str
    version: int
    text: str

    @property
    def placeholders(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.text) if f}

    def render(self, fields: Mapping[str, Any] | None = None) -> str:
        return render_prompt(self.text, fields)

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "text": self.text}


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, set)):
        return ", ".join(str(v).strip() for v in value if v is not None and str(v).strip())
    return str(value).strip()


def item_text(fields: Mapping[str, Any]) -> str:
    """The item's text fields as labelled lines (``Title: ...``); empty fields are left out."""
    lines = []
    for key in TEXT_FIELDS:
        value = _as_text(fields.get(key))
        if value:
            lines.append(f"{key.capitalize()}: {value}")
    for key, value in fields.items():  # any other field the caller passed, after the known ones
        if key in TEXT_FIELDS or key in ("text", "path") or key.startswith("_"):
            continue
        value = _as_text(value)
        if value:
            lines.append(f"{key.replace('_', ' ').capitalize()}: {value}")
    return "\n".join(lines)


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render_prompt(template: str, fields: Mapping[str, Any] | None = None) -> str:
    """Fill a template's placeholders from ``fields``; missing ones render empty. Output is stripped."""
    fields = dict(fields or {})
    values = _Fields({k: _as_text(v) for k, v in fields.items()})
    if not values.get("text"):
        values["text"] = item_text(fields) or "(no text)"
    if "{" not in template:
        return template.strip()
    return template.format_map(values).strip()


PROMPTS: dict[str, Prompt] = {}


def register_prompt(name: str, text: str, version: int = 1) -> Prompt:
    prompt = Prompt(name=name, version=version, text=text.strip())
    PROMPTS[name] = prompt
    return prompt


register_prompt(
    "product_image",
    """You are looking at the product image of an item from an online shop.
Describe the product for a recommender system in 2-4 factual sentences: what the item is and its
category, its visible attributes (colour, shape, material, pattern, brand or text printed on it),
its style, and who would use it and for what. Describe only what is visible; do not guess a price.""",
    version=1,
)

register_prompt(
    "video_summary",
    """Describe what you see in this short video, as if explaining it to someone who cannot watch it.
Cover, in one paragraph:
1. what happens (the people, animals or objects, the setting and the main actions, in order);
2. the mood and atmosphere;
3. what the creator intends (to entertain, teach, sell, share a moment, ...);
4. any humour or surprise, and why it is funny;
5. any world knowledge needed to understand it (places, events, cultural references).
Be concrete and do not invent details you cannot see.""",
    version=1,
)

register_prompt(
    "text_only_item",
    """Here is the text metadata of an item from a recommendation catalogue (there is no image):
{text}

In 2-3 sentences, describe what this item is about, its main topics and style, and what kind of
user would enjoy it. Use only the text above.""",
    version=1,
)


_NAME_LIKE = re.compile(r"[\w.-]+")


def looks_like_name(value: str) -> bool:
    """A single token of letters, digits, ``_``, ``-`` or ``.`` (``product_imgae``): meant as a name, not text."""
    return bool(_NAME_LIKE.fullmatch(value.strip()))


def check_prompt_name(name: str) -> Prompt:
    """The registered template called ``name``.

    Raises:
        ValueError: ``name`` is not registered; the message names the closest registered prompt,
            or (for something that reads like prompt text) says to use ``prompt_text``.
    """
    if name in PROMPTS:
        return PROMPTS[name]
    known = ", ".join(sorted(PROMPTS))
    if looks_like_name(name):
        close = difflib.get_close_matches(name, sorted(PROMPTS), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"unknown prompt {name!r}{hint} (registered prompts: {known})")
    raise ValueError(f"{name!r} is not a registered prompt name (registered prompts: {known}); "
                     "put custom prompt text under prompt_text")


def custom_prompt(text: str) -> Prompt:
    """A custom template (name ``custom``, version 1) from its text; the text is what the fingerprint records."""
    if not str(text).strip():
        raise ValueError("empty prompt text")
    return Prompt(name="custom", version=1, text=str(text).strip())


def prompt_from_params(name: str | None, text: str | None, default: str) -> Prompt:
    """The prompt of a manifest's ``prompt`` (a registered name) / ``prompt_text`` (custom text) pair.

    Raises:
        ValueError: both are given, ``name`` is not registered, or ``text`` is empty.
    """
    if name is not None and text is not None:
        raise ValueError("give prompt (a registered name) or prompt_text (custom text), not both")
    if text is not None:
        return custom_prompt(text)
    return check_prompt_name(name if name is not None else default)


def resolve_prompt(prompt: str | Prompt | None, default: str) -> Prompt:
    """The Python API's prompt argument: a :class:`Prompt`, a registered name, or custom template text.

    A string that looks like a name (one token, see :func:`looks_like_name`) but is not registered
    is an error naming the closest registered prompt, never a one-word custom prompt.
    """
    if prompt is None:
        return PROMPTS[default]
    if isinstance(prompt, Prompt):
        return prompt
    if prompt in PROMPTS or looks_like_name(str(prompt)):
        return check_prompt_name(str(prompt))
    return custom_prompt(prompt)


__all__ = [
    "Prompt", "PROMPTS", "TEXT_FIELDS", "check_prompt_name", "custom_prompt", "item_text", "looks_like_name",
    "prompt_from_params", "register_prompt", "render_prompt", "resolve_prompt",
]
