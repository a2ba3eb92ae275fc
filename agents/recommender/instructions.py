"""A user's instruction -> :class:`~.constraints.Constraints`: a deterministic parser, and an LLM path that
falls back to it.

The deterministic parser (:func:`parse_instruction`) covers the forms simulated users write: "more <genre>",
"fewer / less <genre>" (a penalty), "no / without <genre>" (a filter), "from the 70s / 1970s / seventies",
"before / after / since <year>", "something lighter / darker" (genre sets), "no sequels" (a title rule),
"something new" (novelty), "something different" (diversity), "like <title>" (a search query). It reads the
user's words only, never item text, so store text cannot steer it.

The LLM path (:func:`parse_with_llm`) asks for JSON matching the :class:`Constraints` schema, validates the
reply (unknown keys and wrong types refused), retries once with the validation error, then falls back to the
deterministic parser; :class:`ParseResult` records which path produced the constraints. Genre words from
either path are grounded in the catalog's vocabulary; words that map to no genre are reported as unsatisfied.

Reference:
    RecoWorld (Meta, 2025), reflective instructions; Agent4Rec (Zhang et al., SIGIR 2024) for the kinds of
    feedback simulated users give; structured-output validation with pydantic (JSON schema).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .constraints import Constraints, GenreVocabulary
from .llm import LLM
from .safety import quote_items

#: "lighter" / "darker" as genre sets (MovieLens names; grounded in the catalog's vocabulary when used)
LIGHT_GENRES = ("Comedy", "Animation", "Children's", "Musical", "Romance")
DARK_GENRES = ("Horror", "Thriller", "Crime", "Film-Noir", "War", "Mystery")

_FILLER = {"movie", "movies", "film", "films", "of", "the", "a", "an", "some", "stuff", "thing", "things",
           "please", "me", "show", "give", "i", "want", "with", "one", "ones", "kind", "kinds", "genre", "more",
           "any", "anything", "all", "so", "too", "many", "much", "really", "just", "maybe", "lot",
           "lots", "again", "instead", "now", "for", "like", "to", "be", "is", "are", "it", "that", "this", "these",
           "those", "my", "something", "nothing", "anymore", "i'm", "im", "would", "could", "you", "we", "let", "us", "have", "get", "see", "watch",
           "prefer", "love", "enough", "no", "not", "without", "fewer", "less", "stop", "skip", "avoid", "hate",
           "dont", "don't", "bit", "little", "pick", "picks", "recommend", "recommendations", "only", "in", "on",
           "and", "or", "but", "also", "there", "here", "what", "about", "how", "well", "very", "good", "great",
           "nice", "fine", "ok", "okay", "yes", "other", "than", "from", "era", "time", "period", "year", "years"}
_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}

_SEQUELS = re.compile(r"\b(?:no|fewer|less|without|stop|skip|avoid|enough|not? (?:more )?|too many)\b.*\bsequels?\b"
                      r"|\bsequels?\b.*\b(?:please not|no more|enough)\b")
_DECADE = re.compile(r"\b(?:from |in )?(?:the )?(?:(1[89]|20)(\d)0'?s|'?(\d)0'?s)\b")
_YEAR_OP = re.compile(r"\b(before|after|since|until|older than|newer than|prior to|pre|post)[ -](1[89]\d\d|20\d\d)\b")
_LIKE = re.compile(r"\b(?:(?:something|anything|movies|films|stuff|ones|more) like|similar to|in the style of|"
                   r"reminds? me of)\s+(.{2,80})$")
_LIGHT = re.compile(r"\b(?:light(?:er)?|lighthearted|light-hearted|fun(?:nier)?|feel[- ]good|happ(?:y|ier)|upbeat|cheerful)\b")
_DARK = re.compile(r"\b(?:dark(?:er)?|grim(?:mer)?|bleak(?:er)?|edgy|edgier|intense|disturbing|more serious)\b")
_NOVEL = re.compile(r"\b(?:something new|new stuff|newer picks|fresh(?:er)?|less popular|lesser[- ]known|"
                    r"hidden gems?|obscure|underrated|not the usual|never heard of|unknown ones?)\b")
_DIVERSE = re.compile(r"\b(?:different|variety|diverse|diversity|mix it up|mix things up|something else|"
                      r"broader|wider range|switch it up)\b")
_AVOID = re.compile(r"\b(?:fewer|less|not so many|not as many|too many|too much|reduce|cut down on|tone down)\b")
_EXCLUDE = re.compile(r"\b(?:no|not|without|stop|skip|avoid|hate|don'?t|dont|enough|none|never|sick of|tired of|"
                      r"no more)\b")
_INCLUDE = re.compile(r"\b(?:more|lots of|want|give me|show me|prefer|love|like|into|craving|in the mood for)\b")


@dataclass(frozen=True)
class ParseResult:
    """Constraints with where they came from, for the trace.

    Attributes:
        constraints: grounded in the catalog's genre vocabulary.
        path: ``deterministic`` | ``llm`` (first reply valid) | ``llm_retry`` (second reply valid) |
            ``deterministic_fallback`` (both replies invalid or the LLM failed).
        unsatisfied: words asked for that match no genre or form (e.g. ``anime`` in a catalog without it).
        errors: why LLM replies were refused, in order.
        replies: the raw LLM replies (clipped), in order.
    """

    constraints: Constraints
    path: str
    unsatisfied: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    replies: tuple[str, ...] = field(default=(), repr=False)


# ---------------------------------------------------------------------------- deterministic
def parse_instruction(text: str, genre_names: Sequence[str]) -> ParseResult:
    """The deterministic parser: the common instruction forms -> grounded constraints.

    Args:
        text: the user's instruction.
        genre_names: the catalog's genre vocabulary.

    Returns:
        :class:`ParseResult` with ``path="deterministic"``.

    Example:
        >>> r = parse_instruction("fewer sequels, something lighter, from the 70s", ["Comedy", "Horror", "Drama"])
        >>> r.constraints.no_sequels, r.constraints.include_genres, r.constraints.year_min, r.constraints.year_max
        (True, ['Comedy'], 1970, 1979)
    """
    vocab = GenreVocabulary(genre_names)
    fields: dict[str, Any] = {"include_genres": [], "exclude_genres": [], "avoid_genres": [], "title_excludes": []}
    unsatisfied: list[str] = []
    op = "include"
    for clause, continues in _clauses(text):
        op = op if continues else "include"  # "no horror or thrillers": the operator carries over "and"/"or"
        clause, found = _parse_forms(clause, fields, vocab)
        if found and not re.search(r"[a-z]", _strip_ops(clause)):
            continue
        clause_op = _op(clause)
        op = clause_op or op
        genres, unknown = _genre_words(clause, vocab)
        for g in genres:
            for key in ("include_genres", "exclude_genres", "avoid_genres"):
                if g in fields[key]:
                    fields[key].remove(g)
            fields[f"{op}_genres"].append(g)
        if clause_op and not genres and unknown and not found:
            unsatisfied.append(" ".join(unknown))
    try:
        c = Constraints(**fields)
    except ValidationError as exc:  # e.g. "after 1990 and before 1980": keep what is consistent
        unsatisfied.append(f"inconsistent year range ({_first_error(exc)})")
        c = Constraints(**{**fields, "year_min": None, "year_max": None})
    c, more = vocab.ground(c)
    return ParseResult(c, "deterministic", tuple(dict.fromkeys(unsatisfied + more)))


def _clauses(text: str) -> list[tuple[str, bool]]:
    """Clauses of ``text`` and whether each continues the previous one ("and" / "or" / "plus"): an operator
    carries over a continuation ("no horror or thrillers") but not a new sentence part ("no dramas, something
    funny")."""
    text = " ".join(str(text).lower().replace("\u2019", "'").split())
    out = []
    for part in re.split(r"[,;.!?]|\bbut\b|\bthough\b|\bthen\b|\bwhile\b", text):
        subs = [c.strip() for c in re.split(r"\band\b|\bor\b|\bplus\b|&", part)]
        out += [(c, i > 0) for i, c in enumerate(subs) if c]
    return out


def _strip_ops(clause: str) -> str:
    words = [w for w in re.findall(r"[a-z']+", clause) if w not in _FILLER]
    return " ".join(words)


def _op(clause: str) -> str | None:
    """``avoid`` / ``exclude`` / ``include`` for the clause's strongest operator word (in that order)."""
    if _AVOID.search(clause):
        return "avoid"
    if _EXCLUDE.search(clause):
        return "exclude"
    if _INCLUDE.search(clause):
        return "include"
    return None


def _parse_forms(clause: str, fields: dict[str, Any], vocab: GenreVocabulary) -> tuple[str, bool]:
    """Fill the non-genre forms found in ``clause``; returns the clause with them cut out and whether any was."""
    found = False
    if _SEQUELS.search(clause) or re.fullmatch(r"\s*sequels?\s*", clause):
        fields["no_sequels"], found = True, True
        clause = re.sub(r"\bsequels?\b", " ", clause)
    m = _YEAR_OP.search(clause)
    if m:
        word, year = m.group(1), int(m.group(2))
        negated = bool(re.search(r"\b(?:nothing|no|not|none|never|don'?t want)\b", clause[:m.start()]))
        if word in ("before", "older than", "prior to", "pre"):
            fields["year_min" if negated else "year_max"] = year if negated else year - 1
        elif word == "until":
            fields["year_min" if negated else "year_max"] = year + 1 if negated else year
        elif word == "since":
            fields["year_max" if negated else "year_min"] = year - 1 if negated else year
        else:  # after, newer than, post
            fields["year_max" if negated else "year_min"] = year if negated else year + 1
        clause, found = clause[:m.start()] + " " + clause[m.end():], True
    m = _DECADE.search(clause)
    if m:
        start = (int(m.group(1)) * 100 + int(m.group(2)) * 10) if m.group(1) else _century(int(m.group(3)))
        fields["year_min"], fields["year_max"] = start, start + 9
        clause, found = clause[:m.start()] + " " + clause[m.end():], True
    for word, start in _DECADE_WORDS.items():
        if re.search(rf"\b{word}\b", clause):
            fields["year_min"], fields["year_max"] = start, start + 9
            clause, found = clause.replace(word, " "), True
    for pattern, key in ((_NOVEL, "novelty_boost"), (_DIVERSE, "diversity_boost")):
        if pattern.search(clause):
            fields[key], found = 1.0, True
            clause = pattern.sub(" ", clause)
    if re.search(r"\bnew\b", clause) and not _genre_words(clause, vocab)[0]:
        fields["novelty_boost"], found = 1.0, True
        clause = re.sub(r"\bnew\b", " ", clause)
    for pattern, include, avoid in ((_LIGHT, LIGHT_GENRES, DARK_GENRES), (_DARK, DARK_GENRES, LIGHT_GENRES)):
        if pattern.search(clause):
            inc = [g for g in (vocab.resolve(x) for x in include) if g]
            fields["include_genres"] += inc
            fields["avoid_genres"] += [g for g in (vocab.resolve(x) for x in avoid) if g and g not in inc]
            clause, found = pattern.sub(" ", clause), True
    m = _LIKE.search(clause)
    if m and (_strip_ops(m.group(1)) or re.search(r"\d", m.group(1))):  # "like Movie 43": the number names it
        fields["query"], found = m.group(1).strip(" '\""), True
        clause = clause[:m.start()]
    return clause, found


def _century(d: int) -> int:
    """'70s -> 1970; '00s / '10s -> 2000 / 2010 (no film catalog has the 1900s-1910s as its main era)."""
    return 2000 + d * 10 if d <= 1 else 1900 + d * 10


def _genre_words(clause: str, vocab: GenreVocabulary) -> tuple[list[str], list[str]]:
    """Genres named in ``clause`` (multi-word phrases first) and the leftover content words."""
    genres, rest = [], f" {clause} "
    for phrase in vocab.phrases():
        pat = rf"(?<![a-z]){re.escape(phrase)}(?:s|es)?(?![a-z])"
        if re.search(pat, rest):
            genres.append(vocab.resolve(phrase))
            rest = re.sub(pat, " ", rest)
    words = [w for w in re.findall(r"[a-z][a-z'-]*", rest) if w not in _FILLER and len(w) > 2]
    for w in list(words):  # single words: plural forms and typos ("comdies")
        g = vocab.resolve(w)
        if g is not None:
            genres.append(g)
            words.remove(w)
    return list(dict.fromkeys(g for g in genres if g)), words


# ---------------------------------------------------------------------------- LLM path
SYSTEM_PROMPT = (
    "You convert a movie viewer's request into JSON for a recommender. Reply with one JSON object and nothing "
    "else. Allowed keys: include_genres (list), exclude_genres (list), avoid_genres (list), year_min (int), "
    "year_max (int), no_sequels (bool), title_excludes (list), novelty_boost (0-3), diversity_boost (0-3), "
    "query (string). Use only genres from the list given. Omit keys you do not need."
)
_EXAMPLE_REQUEST, _EXAMPLE_JSON = "more comedies, nothing before 1980", '{"include_genres": ["Comedy"], "year_min": 1980}'
_EXAMPLE = f"Request: {_EXAMPLE_REQUEST}\nJSON: {_EXAMPLE_JSON}"


def build_messages(text: str, genre_names: Sequence[str], context: Sequence[Mapping[str, Any]] = ()) -> list[dict]:
    """The chat messages of the LLM path: the schema, the genre list, one example, the request, and the items
    the user just saw as a quoted data block (item text is data, never instructions: :func:`.safety.quote_items`).
    """
    user = [f"Genres: {', '.join(genre_names)}", _EXAMPLE]
    if context:
        user.append("Items the viewer was just shown (for reference only):\n" + quote_items(list(context)))
    user.append(f"Request: {' '.join(str(text).split())[:500]}\nJSON:")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(user)}]


def extract_json(reply: str) -> str:
    """The first balanced ``{...}`` object of ``reply`` (models wrap JSON in prose or code fences).

    Raises:
        ValueError: no complete object.
    """
    start = reply.find("{")
    while start >= 0:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(reply)):
            ch = reply[i]
            if in_str:
                esc, in_str = (not esc and ch == "\\"), (in_str if esc or ch != '"' else False)
                continue
            if ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return reply[start:i + 1]
        start = reply.find("{", start + 1)
    raise ValueError("no complete JSON object in the reply")


def validate_reply(reply: str) -> Constraints:
    """The reply's JSON as :class:`Constraints` (strict: unknown keys and wrong types refused).

    Raises:
        ValueError: no JSON object, invalid JSON, or a schema violation (the message is for the LLM).
    """
    raw = extract_json(reply)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(obj, dict):
        raise ValueError("the JSON must be an object")
    try:
        return Constraints.model_validate(obj, strict=True)
    except ValidationError as exc:
        raise ValueError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors()
    e = errs[0]
    where = ".".join(str(p) for p in e.get("loc", ())) or "object"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{where}: {e.get('msg', 'invalid')}{more}"


def _check_not_echo(c: Constraints, text: str, genre_names: Sequence[str]) -> None:
    """Refuse a reply built only from the prompt's example when it answers another request.

    Small models copy the example: SmolLM2-135M answered 20 of 30 requests with exactly the example's JSON and
    7 more with its values rearranged (``{"include_genres": ["Comedy"], "year_max": 1980}`` for "fewer dramas").
    A reply is an echo when every value it sets is one of the example's (genre Comedy, year 1980) and the
    deterministic parse of the request differs (so "more comedies" answered with Comedy stays valid).

    Raises:
        ValueError: the reply is an echo of the example.
    """
    vocab = GenreVocabulary(genre_names)
    grounded = vocab.ground(c)[0]
    example = vocab.ground(Constraints.model_validate_json(_EXAMPLE_JSON))[0]
    allowed = {("genre", g) for g in example.include_genres} | {("year", example.year_min)}
    values = {("genre", g) for g in grounded.include_genres + grounded.exclude_genres + grounded.avoid_genres}
    values |= {("year", y) for y in (grounded.year_min, grounded.year_max) if y is not None}
    others = grounded.model_copy(update={"include_genres": [], "exclude_genres": [], "avoid_genres": [],
                                         "year_min": None, "year_max": None})
    if values and values <= allowed and others.is_empty() \
            and parse_instruction(text, genre_names).constraints != grounded:
        raise ValueError("the reply repeats the example's values instead of answering the request")


def parse_with_llm(text: str, genre_names: Sequence[str], llm: LLM, *, seed: int = 0,
                   context: Sequence[Mapping[str, Any]] = (), max_tokens: int = 120) -> ParseResult:
    """Constraints from an LLM's JSON; one retry with the error, then the deterministic parser.

    Args:
        text: the user's instruction.
        genre_names: the catalog's genre vocabulary.
        llm: any :class:`~.llm.LLM`.
        seed: passed to the LLM (the retry uses ``seed + 1``).
        context: records of items the user just saw (quoted as data in the prompt).
        max_tokens: reply budget.

    Returns:
        :class:`ParseResult`; ``path`` says which attempt (or the fallback) produced it. Never raises for a
        bad reply or a failed call (any exception of ``llm.complete`` counts as a failed attempt).

    Example:
        >>> class Echo:  # an LLM that always answers the same JSON
        ...     def complete(self, messages, max_tokens, seed): return '{"exclude_genres": ["horror"]}'
        >>> r = parse_with_llm("no horror", ["Horror", "Comedy"], Echo())
        >>> r.path, r.constraints.exclude_genres
        ('llm', ['Horror'])
    """
    messages = build_messages(text, genre_names, context)
    errors: list[str] = []
    replies: list[str] = []
    for attempt in range(2):
        try:
            reply = llm.complete(messages, max_tokens, seed + attempt)
        except Exception as exc:  # noqa: BLE001  any backend failure (LLMError or a plug-in's bug) -> fallback
            errors.append(f"call failed: {type(exc).__name__}: {exc}"[:300])
            continue
        replies.append(str(reply)[:500])
        try:
            c = validate_reply(str(reply))
            _check_not_echo(c, text, genre_names)
        except ValueError as exc:
            errors.append(str(exc))
            messages = messages + [{"role": "assistant", "content": str(reply)[:500]},
                                   {"role": "user", "content": f"That is not valid: {exc}. Reply with one JSON "
                                                               f"object using only the allowed keys."}]
            continue
        grounded, unsatisfied = GenreVocabulary(genre_names).ground(c)
        return ParseResult(grounded, "llm" if attempt == 0 else "llm_retry", tuple(unsatisfied), tuple(errors),
                           tuple(replies))
    fallback = parse_instruction(text, genre_names)
    return ParseResult(fallback.constraints, "deterministic_fallback", fallback.unsatisfied, tuple(errors),
                       tuple(replies))


#: typical instructions of simulated users (the LLM-validity benchmark's set, 30)
TYPICAL_INSTRUCTIONS: tuple[str, ...] = (
    "more comedies", "no horror please", "fewer dramas", "something lighter", "something darker",
    "from the 70s", "movies from the 1980s", "nothing before 1990", "only films after 1995", "no sequels",
    "something new", "something different", "more sci-fi and less romance", "no musicals, more action",
    "fewer sequels, something lighter, from the 70s", "I want thrillers from the nineties",
    "stop showing me kids movies", "more romantic comedies", "too many westerns", "give me some documentaries",
    "something like Star Wars", "older films, before 1970", "less violence, more family films",
    "more war movies but no westerns", "animated films please", "I'm tired of crime movies",
    "more mysteries from the 40s", "hidden gems, not the usual blockbusters", "more adventure and fantasy",
    "enough dramas, something funny",
)


def llm_validity(llm: LLM, genre_names: Sequence[str], instructions: Sequence[str] = TYPICAL_INSTRUCTIONS,
                 seed: int = 0) -> dict[str, Any]:
    """How often an LLM's reply is valid Constraints JSON, and how often it agrees with the deterministic parse.

    Args:
        llm: the LLM to measure.
        genre_names: the catalog's vocabulary.
        instructions: the requests to parse.
        seed: LLM seed.

    Returns:
        ``{"n", "valid_first", "valid_after_retry", "fallback", "agree_with_deterministic", "rows"}``; each
        row has the instruction, path, constraints (as a dict) and errors.
    """
    rows, counts = [], {"llm": 0, "llm_retry": 0, "deterministic_fallback": 0}
    agree = 0
    for text in instructions:
        r = parse_with_llm(text, genre_names, llm, seed=seed)
        counts[r.path] = counts.get(r.path, 0) + 1
        det = parse_instruction(text, genre_names).constraints
        agree += int(r.path != "deterministic_fallback" and r.constraints == det)
        rows.append({"instruction": text, "path": r.path, "constraints": r.constraints.model_dump(exclude_defaults=True),
                     "errors": list(r.errors), "replies": list(r.replies)})
    n = len(instructions)
    return {"n": n, "valid_first": counts["llm"] / n, "valid_after_retry": (counts["llm"] + counts["llm_retry"]) / n,
            "fallback": counts["deterministic_fallback"] / n, "agree_with_deterministic": agree / n, "rows": rows}


__all__ = ["ParseResult", "parse_instruction", "parse_with_llm", "build_messages", "extract_json", "validate_reply",
           "llm_validity", "TYPICAL_INSTRUCTIONS", "LIGHT_GENRES", "DARK_GENRES", "SYSTEM_PROMPT"]
