"""Can grammar-constrained decoding make SmolLM2-135M parse instructions? A probe, not part of the agent.

The agent's LLM path asks for JSON, validates it and falls back to the deterministic parser
(:mod:`mmfeat.agents.recommender.instructions`); SmolLM2's plain replies were never the right constraints. This
probe forces SmolLM2's greedy decoding through a JSON-schema automaton (outlines-core: the schema's regex
compiled against the model's byte-level vocabulary; genres an enum of the catalog's names), so every reply is
valid by construction, and counts how many replies equal the deterministic parse of the 30 typical
instructions. If validity were the only problem, agreement would rise; it does not (``docs/agents.md``), so
constrained decoding is not shipped for this model.

Needs ``outlines-core`` (not a dependency of mmfeat)::

    .venv/bin/pip install outlines-core==0.2.14
    python bench/agentic/constrained_probe.py
"""
from __future__ import annotations

import json
import sys
import time

MOVIELENS_GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
                    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
                    "Western"]


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, character -> byte (printable bytes map to themselves, the rest to 256+)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), 256)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def constraints_schema(genres: list[str]) -> dict:
    """The Constraints fields an instruction needs, genres restricted to the catalog's names."""
    g = {"type": "array", "items": {"enum": genres}, "maxItems": 4}
    return {"type": "object", "properties": {
        "include_genres": g, "exclude_genres": g, "avoid_genres": g,
        "year_min": {"type": ["integer", "null"]}, "year_max": {"type": ["integer", "null"]},
        "no_sequels": {"type": "boolean"}, "query": {"type": ["string", "null"], "maxLength": 60}},
        "required": ["include_genres", "exclude_genres", "avoid_genres", "year_min", "year_max", "no_sequels",
                     "query"]}


def main() -> None:
    try:
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema
    except ImportError:
        sys.exit("this probe needs outlines-core: .venv/bin/pip install outlines-core==0.2.14")
    import torch

    from mmfeat.agents.recommender.constraints import GenreVocabulary
    from mmfeat.agents.recommender.instructions import (TYPICAL_INSTRUCTIONS, build_messages, parse_instruction,
                                                        validate_reply)
    from mmfeat.agents.recommender.llm import SmolLM2

    llm = SmolLM2(stop_strings=())
    tok, model = llm.tokenizer, llm.model
    alphabet, special = byte_level_alphabet(), set(tok.all_special_ids)
    vocab: dict[bytes, list[int]] = {}
    for text, i in tok.get_vocab().items():
        if i not in special and all(ch in alphabet for ch in text):
            vocab.setdefault(bytes(alphabet[ch] for ch in text), []).append(i)
    regex = build_regex_from_schema(json.dumps(constraints_schema(MOVIELENS_GENRES)), r"[ ]?")
    index = Index(regex, Vocabulary(tok.eos_token_id, vocab))
    valid = agree = 0
    t0 = time.perf_counter()
    for instruction in TYPICAL_INSTRUCTIONS:
        guide = Guide(index)
        prompt = tok.apply_chat_template(build_messages(instruction, MOVIELENS_GENRES), add_generation_prompt=True,
                                         tokenize=False)
        step_ids = tok([prompt], return_tensors="pt", add_special_tokens=False)["input_ids"]
        out, past = [], None
        with torch.inference_mode():
            for _ in range(160):
                o = model(input_ids=step_ids, past_key_values=past, use_cache=True)
                past, logits = o.past_key_values, o.logits[0, -1]
                mask = torch.full_like(logits, float("-inf"))
                mask[guide.get_tokens()] = 0.0
                nxt = int(torch.argmax(logits + mask))
                if nxt == tok.eos_token_id:
                    break
                out.append(nxt)
                guide.advance(nxt)
                if guide.is_finished():
                    break
                step_ids = torch.tensor([[nxt]])
        reply = tok.decode(out)
        try:
            got = GenreVocabulary(MOVIELENS_GENRES).ground(validate_reply(reply))[0]
            valid += 1
        except ValueError:
            got = None
        agree += int(got == parse_instruction(instruction, MOVIELENS_GENRES).constraints)
        print(f"{instruction!r} -> {reply}")
    n = len(TYPICAL_INSTRUCTIONS)
    print(f"SmolLM2-135M, JSON-schema constrained greedy decoding: {valid}/{n} valid, {agree}/{n} equal to the "
          f"deterministic parse, {(time.perf_counter() - t0) / n:.1f} s per instruction")


if __name__ == "__main__":
    main()
