"""The manifest: one YAML file per dataset deployment, validated before anything runs.

A manifest names the source (which adapter, where its files are), the feature sets to build
(which featurizer kind, which backbone, which input), and the run's thresholds. Validation is
strict: an unknown key, a wrong type, a missing path or a path that escapes the data root stops the
run with the field's path and the reason, before a single file is written.

That includes what the featurizers will receive: every feature set's ``kind`` (and its
``fallback``'s) must be a registered featurizer kind, its ``params`` must fit that kind's schema
(:mod:`mmfeat.featurizers.params`), and its input must be one the kind reads. The check imports the
featurizer modules but neither torch nor any weights, so ``mmfeat manifest check`` is cheap, and a
typo fails there with the closest valid name (``feature_sets.0.params.batchsize: unknown parameter;
did you mean batch_size?``) instead of mid-run.

Paths: ``data_root`` (default: the folder holding the manifest) anchors every source path;
``source.root`` and every file option of the source are relative to it and must stay inside it.
A real download is one override away: ``data_root: /data/MicroLens-100k`` with ``source.root: .``,
or the flow/CLI parameter ``data_root``.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

#: The folder holding pipelines/, featurizers/, manifests/: the checkout, or site-packages/mmfeat when installed.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_DIR = Path(os.environ.get("MMFEAT_MANIFESTS", PACKAGE_ROOT / "manifests"))


class ManifestError(ValueError):
    """A manifest that cannot run: the message lists each bad field as ``path.to.field: reason``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    kind: Literal["microlens", "movielens", "mmrec", "mmctr", "generic"]
    #: Folder of the source's files, relative to ``data_root``. ``None`` means the adapter's built-in
    #: location (MovieLens from the recbole wheel).
    root: str | None = None
    #: Adapter options (file names, prefixes, column mappings); file options are relative to root.
    options: dict[str, Any] = Field(default_factory=dict)


class InputSpec(_Strict):
    """Where one featurizer's input comes from: text fields, a media column, or a parent feature set."""

    text_fields: list[str] | None = None
    #: Python format string over the item's fields, e.g. ``"{title}. Genres: {genres}"``. Missing
    #: fields format as empty. Default: the non-empty text fields joined with ". ".
    template: str | None = None
    media: Literal["image_uri", "video_uri", "audio_uri"] | None = None
    #: Name of another feature set in this manifest whose ``text`` output is this input (chaining).
    from_: str | None = Field(default=None, alias="from")
    #: With ``text_fields``: append another feature set's text (e.g. DGVAE's image words) to the
    #: item text; items whose parent row failed keep their own text.
    append_from: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one(self) -> "InputSpec":
        given = [k for k, v in (("text_fields", self.text_fields), ("media", self.media), ("from", self.from_)) if v]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text_fields, media, from (got {given or 'none'})")
        if self.template and not self.text_fields:
            raise ValueError("template needs text_fields")
        if self.append_from and not self.text_fields:
            raise ValueError("append_from needs text_fields")
        return self


class FeaturizerSpec(_Strict):
    """A fallback featurizer: its kind, params and (if it reads something else) its own input."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    input: InputSpec | None = None


class FeatureSetSpec(_Strict):
    #: Feature set name in the store (``title_minilm``); versions live under it.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: str
    input: InputSpec
    params: dict[str, Any] = Field(default_factory=dict)
    #: Used instead when the primary featurizer's weights are unavailable (e.g. no VLM offline).
    fallback: FeaturizerSpec | None = None
    #: Skip this feature set (with a logged reason) when neither it nor its fallback can load.
    optional: bool = False

    @property
    def parent(self) -> str | None:
        """The feature set this one reads (``from`` or ``append_from``), if any."""
        return self.input.from_ or self.input.append_from


class RunnerSpec(_Strict):
    """Where a feature set's shards run (:mod:`mmfeat.pipelines.engine.runners`); never part of a version id:
    every runner produces the same rows, so the same version.

    - ``in_process`` (default): one shard after another in the flow's process.
    - ``dask``: Prefect's ``DaskTaskRunner``; a temporary ``LocalCluster`` of ``workers`` processes, or
      the scheduler at ``address`` (``tcp://host:8786``).
    - ``ray``: Prefect's ``RayTaskRunner``; a local Ray instance with ``workers`` CPUs, or the cluster at
      ``address`` (``ray://host:10001`` or ``auto``); each shard task asks for ``num_gpus`` / ``num_cpus``.

    Workers must see the store root (the same folder, a shared file system, or an ``s3://`` root).
    """

    kind: Literal["in_process", "dask", "ray"] = "in_process"
    address: str | None = None
    #: Worker processes of a temporary local cluster (default: the machine's CPU count).
    workers: int | None = Field(default=None, ge=1)
    #: Ray only: resources each shard task requests (``num_gpus: 1`` puts one shard per GPU).
    num_gpus: float | None = Field(default=None, ge=0)
    num_cpus: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _no_ignored_keys(self) -> "RunnerSpec":
        given = self.model_fields_set
        if self.kind == "in_process" and given & {"address", "workers", "num_gpus", "num_cpus"}:
            raise ValueError(f"{sorted(given - {'kind'})} only apply to kind dask or ray")
        if self.address and "workers" in given:
            raise ValueError("workers sizes a temporary local cluster; an existing cluster (address) has its own")
        if self.kind != "ray" and given & {"num_gpus", "num_cpus"}:
            raise ValueError("num_gpus / num_cpus are per-task Ray resources: they only apply to kind ray")
        return self


class Manifest(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    #: Store namespace for the features (defaults to ``name``).
    dataset: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    data_root: str | None = None
    source: SourceSpec
    feature_sets: list[FeatureSetSpec] = Field(min_length=1)
    #: Fraction of error rows above which a feature set fails and publishes nothing.
    failure_threshold: float = Field(default=0.2, ge=0.0, le=1.0)
    #: Items per shard: the unit of a Prefect task, of a Parquet part and of resume.
    shard_size: int = Field(default=2048, ge=1)
    #: Keep only the first N items (sorted by id); for quick looks at big sources.
    limit_items: int | None = Field(default=None, ge=1)
    #: Where the shards run (default in process); ``mmfeat extract --runner`` overrides it.
    runner: RunnerSpec = Field(default_factory=RunnerSpec)

    # Set by load_manifest (never by the YAML): the file the manifest came from.
    _path: Path | None = PrivateAttr(default=None)

    @field_validator("feature_sets")
    @classmethod
    def _unique_names(cls, sets: list[FeatureSetSpec]) -> list[FeatureSetSpec]:
        names = [s.name for s in sets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature set names: {dupes}")
        known: set[str] = set()
        for s in sets:  # a chain may only read a set defined earlier: the order is the run order
            for key, parent in (("from", s.input.from_), ("append_from", s.input.append_from)):
                if parent and parent not in known:
                    raise ValueError(f"{s.name}: input.{key} {parent!r} must name a feature set defined above it")
            known.add(s.name)
        return sets

    @property
    def path(self) -> Path | None:
        """The manifest file (set by :func:`load_manifest`); relative paths are anchored at its folder."""
        return self._path

    @property
    def store_dataset(self) -> str:
        return self.dataset or self.name

    def resolved_data_root(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return (base / (self.data_root or ".")).resolve()

    def source_root(self) -> Path | None:
        """The source folder, checked to exist and to stay inside the data root."""
        if self.source.root is None:
            return None
        return _inside(self.resolved_data_root(), self.source.root, "source.root")

    def feature_set(self, name: str) -> FeatureSetSpec:
        """The feature set called ``name``.

        Raises:
            ManifestError: no such set; the message suggests the closest real name (or lists them all),
                never a command that would repeat the typo.
        """
        for s in self.feature_sets:
            if s.name == name:
                return s
        from mmfeat.featurizers.params import did_you_mean

        raise ManifestError(f"manifest {self.name!r} has no feature set {name!r}"
                            f"{did_you_mean(name, [s.name for s in self.feature_sets])}")


def _inside(root: Path, rel: str, field: str) -> Path:
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise ManifestError(f"{field}: path {rel!r} escapes the data root {root}")
    if not target.exists():
        raise ManifestError(f"{field}: path {target} does not exist (fix the manifest's data_root, or pass "
                            f"--data-root / the flow's data_root parameter pointing at your copy of the data)")
    return target


def _file_options(source: SourceSpec, root: Path | None) -> None:
    """Source options that name files (``*_file``, ``*_dir``) must exist inside the source root."""
    if root is None:
        return
    for key, value in source.options.items():
        if isinstance(value, str) and key.endswith(("_file", "_dir")):
            _inside(root, value, f"source.options.{key}")


def find_manifest(name_or_path: str | os.PathLike[str]) -> Path:
    """A manifest path: an existing file, or a name in ``manifests/`` (``microlens`` -> microlens.yaml)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path.resolve()
    candidate = MANIFEST_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    available = sorted(p.stem for p in MANIFEST_DIR.glob("*.yaml"))
    raise ManifestError(f"manifest {str(name_or_path)!r} not found (not a file; known names: {available})")


# --------------------------------------------------------------------------- error messages


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation such as ``list[FeatureSetSpec]`` or ``InputSpec | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner = _inner_model(arg)
            if inner is not None:
                return inner
    return None


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the mapping at ``loc`` in a manifest (aliases as written in YAML)."""
    model: type[BaseModel] | None = Manifest
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        model = _inner_model(fields[part].annotation) if part in fields else None
    return [f.alias or name for name, f in model.model_fields.items()] if model else []


def _param_names(raw: Mapping[str, Any], loc: tuple[Any, ...]) -> list[str]:
    """Param names of the kind of the feature set at ``loc`` (``feature_sets.N``), if that kind is known."""
    entry: Any = raw
    for part in loc:
        if isinstance(entry, dict):
            entry = entry.get(part)
        elif isinstance(entry, list) and isinstance(part, int) and part < len(entry):
            entry = entry[part]
        else:
            return []
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if not isinstance(kind, str):
        return []
    from mmfeat.featurizers.registry import featurizer_kind

    try:
        return list(featurizer_kind(kind).params.model_fields)
    except ValueError:  # an unknown kind is reported on its own line
        return []


def _unknown_key(raw: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    """``unknown key; did you mean X?``: the closest key of that mapping, or a param put one level too high."""
    import difflib

    from mmfeat.featurizers.params import did_you_mean

    key, parent = str(loc[-1]), loc[:-1]
    keys = _keys_at(parent)
    if not difflib.get_close_matches(key, keys, n=1, cutoff=0.6):
        params = _param_names(raw, parent)
        close = difflib.get_close_matches(key, params, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean params.{close[0]}?"
    return "unknown key" + did_you_mean(key, keys)


def _structure_problems(exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    """One ``path: reason`` line per pydantic error of the manifest's own structure."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        reason = _unknown_key(raw, err["loc"]) if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}: {reason}" if where else reason)
    return lines


# --------------------------------------------------------------------------- featurizer checks

_MEDIA_KINDS = {"image_uri": "image", "video_uri": "video", "audio_uri": "audio"}


def _input_kind(raw_input: Any, parents: Mapping[str, str] | None = None) -> str | None:
    """What a raw ``input:`` mapping gives a featurizer (text, a media kind, or ``from`` a parent: what the
    parent's kind produces, ``parents`` mapping feature set name -> kind); None if it is malformed."""
    from mmfeat.featurizers.registry import FEATURIZER_KINDS

    if not isinstance(raw_input, dict):
        return None
    if raw_input.get("media") in _MEDIA_KINDS:
        return _MEDIA_KINDS[raw_input["media"]]
    parent = raw_input.get("from")
    if isinstance(parent, str) and parent in (parents or {}):
        registered = FEATURIZER_KINDS.get((parents or {})[parent])
        if registered is not None and registered.produces != "text":
            return registered.produces
    return "text" if raw_input.get("text_fields") or parent else None


def _featurizer_entry_problems(
    entry: Mapping[str, Any], where: str, raw_input: Any, *, inherited: bool = False,
    parents: Mapping[str, str] | None = None,
) -> list[str]:
    """Kind, params and input of one featurizer entry (a feature set or its fallback).

    Malformed entries (no string ``kind``, ``params`` not a mapping) are left to the structural
    validation, which reports them.
    """
    from mmfeat.featurizers.params import ParamsError
    from mmfeat.featurizers.registry import featurizer_kind

    kind = entry.get("kind")
    if not isinstance(kind, str):
        return []
    try:
        registered = featurizer_kind(kind)
    except ValueError as exc:
        return [f"{where}.kind: {exc}"]
    problems = []
    params = entry.get("params", {})
    if isinstance(params, dict):
        try:
            registered.params.parse(params, kind)
        except ParamsError as exc:
            problems += [f"{where}.params{'.' + p if p else ''}: {reason}" for p, reason in exc.problems]
    given = _input_kind(raw_input, parents)
    if given is not None and given not in registered.reads:
        note = " (the feature set's input; give the fallback its own input)" if inherited else ""
        reads = " or ".join(registered.reads)
        problems.append(f"{where}.input: {kind} reads {reads} input, but it is given {given}{note}")
    return problems


def featurizer_problems(raw: Mapping[str, Any]) -> list[str]:
    """Every featurizer problem of a raw manifest mapping, one ``path: reason`` line each.

    Checks each feature set's ``kind``, ``params`` and ``input`` and the same for its ``fallback``
    (whose input defaults to the feature set's). Loads no model and imports no torch.
    """
    sets = raw.get("feature_sets")
    if not isinstance(sets, list):
        return []
    problems: list[str] = []
    kinds = {e.get("name"): e.get("kind") for e in sets if isinstance(e, dict) and isinstance(e.get("kind"), str)}
    for i, entry in enumerate(sets):
        if not isinstance(entry, dict):
            continue
        problems += _featurizer_entry_problems(entry, f"feature_sets.{i}", entry.get("input"), parents=kinds)
        fallback = entry.get("fallback")
        if isinstance(fallback, dict):
            own = fallback.get("input")
            problems += _featurizer_entry_problems(fallback, f"feature_sets.{i}.fallback", own or entry.get("input"),
                                                   inherited=not own, parents=kinds)
    return problems


def _entry_backbone(kind: str, params: Mapping[str, Any]) -> str | None:
    """The backbone an entry will load (its ``params.backbone``, else the kind's default), if the kind has one."""
    from mmfeat.featurizers.registry import featurizer_kind

    backbone = getattr(featurizer_kind(kind).params.parse(params, kind), "backbone", None)
    return backbone if isinstance(backbone, str) else None


def backbone_problems(manifest: Manifest, feature_sets: list[str] | None = None) -> list[str]:
    """One ``feature_sets.N[.fallback].params.backbone: reason`` line per backbone that cannot be used here.

    Checked on disk before a run (``mmfeat manifest check``, ``mmfeat extract``, ``mmfeat.extract``),
    not by :func:`validate_manifest`: whether a folder or a cached hub model exists depends on the
    machine, and reading a manifest (to train, to export) must not depend on where its weights are.
    A mistyped name (``all-MiniLM-L6-v3``) is always a problem, with the closest registered name; missing
    weights only where the run needs them (see :func:`mmfeat.featurizers.registry.backbone_problem`).

    Args:
        manifest: a validated manifest.
        feature_sets: only these sets (default all).

    Returns:
        The problems, in manifest order (empty when every backbone can be used).
    """
    from mmfeat.featurizers.registry import backbone_problem

    problems = []
    for i, spec in enumerate(manifest.feature_sets):
        if feature_sets and spec.name not in feature_sets:
            continue
        entries = [(f"feature_sets.{i}", spec.kind, spec.params, not spec.optional and spec.fallback is None)]
        if spec.fallback is not None:
            entries.append((f"feature_sets.{i}.fallback", spec.fallback.kind, spec.fallback.params, not spec.optional))
        for where, kind, params, required in entries:
            backbone = _entry_backbone(kind, params)
            reason = backbone_problem(backbone, required=required) if backbone is not None else None
            if reason:
                problems.append(f"{where}.params.backbone: {reason}")
    return problems


def check_backbones(manifest: Manifest, feature_sets: list[str] | None = None) -> None:
    """Raise :class:`ManifestError` listing :func:`backbone_problems` (nothing when there are none).

    Raises:
        ManifestError: one line per backbone that cannot be used here, naming the field.
    """
    problems = backbone_problems(manifest, feature_sets)
    if problems:
        where = f"{manifest.path}: " if manifest.path else ""
        raise ManifestError(f"{where}invalid manifest\n" + "\n".join(f"  {line}" for line in problems))


def _path_order(line: str) -> list[tuple[int, int | str]]:
    """Sort key: problems in manifest order (``feature_sets.2`` before ``feature_sets.10``)."""
    path = line.split(":", 1)[0]
    return [(0, int(p)) if p.isdigit() else (1, p) for p in path.split(".")]


def validate_manifest(raw: Mapping[str, Any], path: Path | None = None) -> Manifest:
    """Validate a raw manifest mapping: its structure and every featurizer's kind, params and input.

    Args:
        raw: the parsed YAML.
        path: the file it came from (anchors relative paths; named in errors).

    Returns:
        The manifest (paths not yet checked on disk; :func:`load_manifest` does that).

    Raises:
        ManifestError: one line per problem, each ``field.path: reason``.
    """
    problems = featurizer_problems(raw)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = _structure_problems(exc, raw) + problems
    if problems:
        problems.sort(key=_path_order)
        where = f"{path}: " if path else ""
        raise ManifestError(f"{where}invalid manifest\n" + "\n".join(f"  {line}" for line in problems))
    manifest._path = path
    return manifest


def load_manifest(name_or_path: str | os.PathLike[str], *, data_root: str | None = None) -> Manifest:
    """Read, validate and path-check a manifest.

    Args:
        name_or_path: a manifest file, or a name in ``manifests/`` (``microlens``).
        data_root: overrides the manifest's own ``data_root``.

    Returns:
        The validated manifest.

    Raises:
        ManifestError: not found, not YAML, or invalid (one line per problem, naming the field).

    Example:
        >>> from mmfeat import load_manifest
        >>> m = load_manifest("microlens")
        >>> m.store_dataset, [s.name for s in m.feature_sets][:2]
        ('microlens-mini', ['title_minilm', 'item_description'])
    """
    path = find_manifest(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    if data_root is not None:
        raw["data_root"] = str(Path(data_root).expanduser().resolve())
    manifest = validate_manifest(raw, path)
    try:
        root = manifest.source_root()
        _file_options(manifest.source, root)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    return manifest
