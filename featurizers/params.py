"""The params schema of every built-in featurizer kind: names, types, defaults, cross-field rules.

Why a module of its own: a manifest is checked (``mmfeat manifest check``) before anything runs,
and that check must be cheap -- no torch, no transformers, no weights. These models import only
pydantic and the prompt registry, so validating ``params:`` costs milliseconds, and a typo such as
``batchsize:`` fails there with the closest valid name instead of as a ``TypeError`` after a model
has loaded. Each featurizer's ``from_spec`` builds from the validated model, so the defaults below
are the ones a manifest run uses.

Every model forbids unknown keys (``extra="forbid"``) and is strict (``normalize: 1`` or
``batch_size: "64"`` are errors, not silently coerced). A key that the featurizer would accept but
ignore in the given configuration (``arch`` without ``backend: open_clip``, ``temperature``
without ``do_sample: true``, ...) is an error too: nothing in a manifest is silently ignored.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Iterable, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmfeat.featurizers.prompts import Prompt, check_prompt_name, custom_prompt, prompt_from_params

P = TypeVar("P", bound="FeaturizerParams")

EmbeddingDtype = Literal["float32", "float16"]
TorchDtype = Literal["float32", "float16", "bfloat16"]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the closest choice (difflib), or ``" (valid: ...)"`` when none is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    return f" (valid: {', '.join(options)})" if options else ""


class ParamsError(ValueError):
    """Params that do not fit a kind's schema; ``problems`` lists ``(field path, reason)`` pairs.

    The message has one line per problem (``text_embedding params.batchsize: unknown parameter;
    did you mean batch_size?``); the manifest check re-prefixes the paths with the field's place in
    the manifest (``feature_sets.0.params.batchsize``).
    """

    def __init__(self, kind: str, problems: list[tuple[str, str]]) -> None:
        self.kind = kind
        self.problems = problems
        super().__init__("\n".join(f"{kind} params{'.' + path if path else ''}: {reason}" for path, reason in problems))


def _reason(error: Mapping[str, Any], fields: Iterable[str]) -> str:
    """One pydantic error as a short reason; unknown keys get the closest valid name."""
    if error["type"] == "extra_forbidden":
        return "unknown parameter" + did_you_mean(str(error["loc"][-1]), fields)
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    if error["type"] == "missing":
        return "required parameter is missing"
    return f"{error['msg']} (got {error['input']!r})"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model that holds the key at ``loc`` (``cf_align.wieght`` -> CFAlignParams')."""
    import typing

    current = model
    for key in loc[:-1]:
        field = current.model_fields.get(str(key))
        if field is None:
            break
        nested = [a for a in (field.annotation, *typing.get_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            break
        current = nested[0]
    return list(current.model_fields)


def params_problems(exc: ValidationError, model: type[BaseModel]) -> list[tuple[str, str]]:
    """``(path, reason)`` for each error of ``exc`` raised by validating ``model``."""
    return [(".".join(str(p) for p in err["loc"]), _reason(err, _fields_at(model, tuple(err["loc"]))))
            for err in exc.errors()]


class FeaturizerParams(BaseModel):
    """Base of every kind's params: strict, frozen, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @classmethod
    def parse(cls: type[P], params: Mapping[str, Any] | BaseModel, kind: str) -> P:
        """Validate manifest params (a mapping) for ``kind``; an already validated model passes through.

        Args:
            params: the manifest's ``params:`` mapping, or an instance of this model.
            kind: the featurizer kind, for the error message.

        Returns:
            The validated params, every default filled in.

        Raises:
            ParamsError: one ``(path, reason)`` per problem.
        """
        if isinstance(params, cls):
            return params
        try:
            return cls.model_validate(dict(params))
        except ValidationError as exc:
            raise ParamsError(kind, params_problems(exc, cls)) from None

    def _only_with(self, field: str, condition: bool, why: str) -> None:
        """A field given explicitly where it would have no effect is an error (nothing silently ignored)."""
        if field in self.model_fields_set and not condition:
            raise ValueError(f"{field} {why}")


# --------------------------------------------------------------------------- text embeddings


class TextEmbeddingParams(FeaturizerParams):
    """``text_embedding``: sentence-transformers backbone and output options."""

    backbone: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(64, gt=0)
    normalize: bool = True
    #: Matryoshka truncation to the leading N dimensions (null = the model's full dimension).
    truncate_dim: int | None = Field(None, gt=0)
    dtype: EmbeddingDtype = "float32"
    max_seq_length: int | None = Field(None, gt=0)
    device: str | None = None
    #: What runs the forward pass: ``SentenceTransformer.encode`` (torch), or the model exported to ONNX
    #: and run by onnxruntime / OpenVINO (CPU; onnx also on CUDA when onnxruntime has its CUDA provider).
    runtime: Literal["torch", "onnx", "openvino"] = "torch"
    #: ``int8``: dynamic int8 quantization of the exported model (onnx / openvino only).
    quantize: Literal["none", "int8"] = "none"

    @model_validator(mode="after")
    def _runtime_options(self) -> "TextEmbeddingParams":
        if self.quantize != "none" and self.runtime == "torch":
            raise ValueError("quantize: int8 needs runtime: onnx or openvino (the torch runtime runs float32)")
        if self.runtime == "openvino" and self.device not in (None, "cpu"):
            raise ValueError(f"runtime: openvino runs on cpu here, got device: {self.device}")
        if self.runtime == "onnx" and self.device not in (None, "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"runtime: onnx runs on cpu or cuda, got device: {self.device}")
        return self


# --------------------------------------------------------------------------- generative kinds


class PromptParams(FeaturizerParams):
    """``prompt`` names a registered template; custom template text goes under ``prompt_text``.

    Keeping the two apart is what lets a typo (``prompt: product_imgae``) be an error instead of
    becoming a one-word prompt. The fingerprint records the full text either way.
    """

    #: The kind's template when neither ``prompt`` nor ``prompt_text`` is given.
    default_prompt: ClassVar[str] = "product_image"
    prompt: str | None = None
    prompt_text: str | None = None

    @field_validator("prompt")
    @classmethod
    def _registered(cls, name: str | None) -> str | None:
        if name is not None:
            check_prompt_name(name)
        return name

    @field_validator("prompt_text")
    @classmethod
    def _not_empty(cls, text: str | None) -> str | None:
        if text is not None:
            custom_prompt(text)
        return text

    @model_validator(mode="after")
    def _one_prompt(self) -> "PromptParams":
        if self.prompt is not None and self.prompt_text is not None:
            raise ValueError("give prompt (a registered name) or prompt_text (custom text), not both")
        return self

    def resolved_prompt(self) -> Prompt:
        """The prompt this featurizer runs with (the kind's default when none is given)."""
        return prompt_from_params(self.prompt, self.prompt_text, self.default_prompt)


class _VLMParams(PromptParams):
    """Keys shared by ``caption`` and ``video_description`` (an MLLM and how it generates)."""

    backbone: str
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    #: With ``backend: auto``: may vllm be picked when it is importable and CUDA is available?
    allow_vllm: bool = True
    #: Extra ``vllm.LLM`` keyword arguments (``max_model_len``, ``gpu_memory_utilization``, ...).
    vllm: dict[str, Any] = Field(default_factory=dict)
    device: str | None = None
    dtype: TorchDtype | None = None
    batch_size: int = Field(8, gt=0)
    #: Unique (file, prompt) generations remembered in memory across batches.
    memo_size: int = Field(4096, ge=0)
    #: Threads loading images / sampling video frames for the next batch while this one generates
    #: (0: decode in the calling thread). Changes speed, never values: not in the fingerprint.
    num_workers: int = Field(2, ge=0)
    max_new_tokens: int = Field(128, gt=0)
    do_sample: bool = False
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _effective(self) -> "_VLMParams":
        self._only_with("allow_vllm", self.backend == "auto", "only applies to backend: auto")
        self._only_with("vllm", self.backend != "transformers", "options only apply to the vllm backend")
        self._only_with("temperature", self.do_sample, "only applies with do_sample: true")
        self._only_with("top_p", self.do_sample, "only applies with do_sample: true")
        if self.do_sample and self.temperature <= 0:
            raise ValueError("do_sample: true needs temperature > 0")
        return self

    def generation(self) -> dict[str, Any]:
        """The fields of :class:`mmfeat.featurizers.captioning.GenerationConfig`."""
        return self.model_dump(include={"max_new_tokens", "do_sample", "temperature", "top_p", "seed"})

    def captioner_kwargs(self) -> dict[str, Any]:
        """The remaining ``Captioner`` constructor arguments (media handling, batching)."""
        loader = {"backbone", "backend", "allow_vllm", "vllm", "device", "dtype", "prompt", "prompt_text"}
        return self.model_dump(exclude=loader | set(self.generation()))


class CaptionParams(_VLMParams):
    """``caption``: one image -> a description."""

    default_prompt: ClassVar[str] = "product_image"
    #: Longest image side given to the model (null = as decoded).
    image_max_side: int | None = Field(1024, gt=0)
    #: Images with more pixels are error rows, never decoded.
    max_pixels: int = Field(50_000_000, gt=0)


class VideoDescriptionParams(_VLMParams):
    """``video_description``: frames sampled from a clip -> a summary."""

    default_prompt: ClassVar[str] = "video_summary"
    num_frames: int = Field(8, gt=0)
    #: Frames at this rate instead of ``num_frames`` uniform ones, at most ``max_frames`` (a long clip
    #: at a fixed rate would otherwise send an unbounded number of frames into the VLM's context).
    fps: float | None = Field(None, gt=0)
    max_frames: int = Field(32, gt=0)
    max_side: int = Field(448, gt=0)
    video_input: Literal["auto", "video", "frames", "grid"] = "auto"
    grid_max_side: int = Field(896, gt=0)

    @model_validator(mode="after")
    def _sampling(self) -> "VideoDescriptionParams":
        self._only_with("num_frames", self.fps is None, "has no effect when fps is set; give one of them")
        self._only_with("max_frames", self.fps is not None, "only applies with fps")
        self._only_with("grid_max_side", self.video_input in ("auto", "grid"), "only applies to video_input: grid")
        return self


class TextDescriptionParams(PromptParams):
    """``text_description``: item text -> a description from a text-only LLM."""

    default_prompt: ClassVar[str] = "text_only_item"
    backbone: str = "SmolLM2-135M-Instruct"
    #: Which ``.gguf`` file of the backbone folder (null = the only one, or an HF model folder).
    gguf_file: str | None = None
    #: System message (null = none).
    system: str | None = "You are a concise assistant that describes catalogue items for a recommender system."
    max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(8, gt=0)
    #: Each input text field is clipped to this many characters.
    max_input_chars: int = Field(2000, gt=0)
    #: Stop a row at its first sentence end once it has this many new tokens (0 = no early stop).
    sentence_stop_after: int = Field(24, ge=0)
    #: No n-gram of this size twice in the generated text (0 = off); the prompt is not counted.
    no_repeat_ngram_size: int = Field(3, ge=0)
    #: transformers' repetition penalty on already generated tokens (1.0 = off).
    repetition_penalty: float = Field(1.15, ge=1.0)
    device: str | None = None


class AudioTranscriptParams(FeaturizerParams):
    """``audio_transcript``: a video's or an audio file's speech -> text (Whisper).

    Whether the input is a video or an audio file comes from the manifest's ``input.media``.
    """

    backbone: str = "whisper-small"
    #: Spoken language (null = Whisper detects it).
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    max_new_tokens: int = Field(200, gt=0)
    batch_size: int = Field(8, gt=0)
    #: Audio after this many seconds is not transcribed.
    max_seconds: float = Field(600.0, gt=0)
    device: str | None = None
    dtype: TorchDtype | None = None


# --------------------------------------------------------------------------- CLIP-family kinds


class _ClipParams(FeaturizerParams):
    """The CLIP backbone keys shared by ``image_embedding``, ``video_embedding`` and ``image_words``."""

    backbone: str = "openai/clip-vit-base-patch32"
    backend: Literal["transformers", "open_clip"] = "transformers"
    #: open_clip architecture (``ViT-B-32``); needed unless the folder has ``open_clip_config.json``.
    arch: str | None = None
    batch_size: int = Field(32, gt=0)
    device: str | None = None

    @model_validator(mode="after")
    def _arch(self) -> "_ClipParams":
        self._only_with("arch", self.backend == "open_clip", "only applies to backend: open_clip")
        return self

    def require_backend(self) -> None:
        """Import the backend's optional package now (open_clip: the ``clip`` extra).

        Raises:
            mmfeat.featurizers.registry.MissingDependency: it is not importable here.
        """
        if self.backend == "open_clip":
            from mmfeat.featurizers.registry import require_extra

            require_extra("open_clip", "clip", "the open_clip backend")


class _ImageFileParams(_ClipParams):
    """Keys of the kinds that decode image files themselves."""

    #: Images with more pixels are error rows, never decoded.
    max_pixels: int = Field(50_000_000, gt=0)
    #: Decode threads prefetching the next batch (0: decode in the calling thread). Not in the fingerprint.
    num_workers: int = Field(2, ge=0)


class ImageEmbeddingParams(_ImageFileParams):
    """``image_embedding``: an image file -> its CLIP embedding."""

    normalize: bool = True
    dtype: EmbeddingDtype = "float32"


class VideoEmbeddingParams(_ClipParams):
    """``video_embedding``: frames of a clip -> the mean of their CLIP embeddings."""

    normalize: bool = True
    dtype: EmbeddingDtype = "float32"
    num_frames: int | None = Field(8, gt=0)
    #: Frames at this rate instead of ``num_frames`` uniform ones, at most ``max_frames``.
    fps: float | None = Field(None, gt=0)
    max_frames: int | None = Field(64, gt=0)
    max_side: int | None = Field(448, gt=0)
    #: Decode threads sampling the next videos' frames while the model embeds earlier ones (0: decode
    #: in the calling thread). Changes speed, never values: not in the fingerprint.
    num_workers: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _sampling(self) -> "VideoEmbeddingParams":
        self._only_with("num_frames", self.fps is None, "has no effect when fps is set; give one of them")
        self._only_with("max_frames", self.fps is not None, "only applies with fps")
        if self.fps is None and self.num_frames is None:
            raise ValueError("set num_frames or fps")
        return self


class ImageWordsParams(_ImageFileParams):
    """``image_words``: an image -> its ``top_k`` closest vocabulary words (DGVAE)."""

    #: The words themselves ...
    vocabulary: list[str] | None = None
    #: ... or texts (a list, or a ``.txt``/``.json`` file) the words are taken from.
    vocabulary_from: list[str] | str | None = None
    min_count: int = Field(2, gt=0)
    max_vocab: int = Field(5000, gt=0)
    top_k: int = Field(10, gt=0)
    template: str = "a photo of {word}"

    @model_validator(mode="after")
    def _vocabulary(self) -> "ImageWordsParams":
        if (self.vocabulary is None) == (self.vocabulary_from is None):
            raise ValueError("give exactly one of vocabulary (words) or vocabulary_from (texts)")
        for key in ("min_count", "max_vocab"):
            self._only_with(key, self.vocabulary_from is not None, "only applies with vocabulary_from")
        if "{word}" not in self.template:
            raise ValueError(f"template must contain {{word}}, got {self.template!r}")
        return self


__all__ = [
    "AudioTranscriptParams", "CaptionParams", "FeaturizerParams", "ImageEmbeddingParams", "ImageWordsParams",
    "ParamsError", "PromptParams", "TextDescriptionParams", "TextEmbeddingParams", "VideoDescriptionParams",
    "VideoEmbeddingParams", "did_you_mean", "params_problems",
]


# --------------------------------------------------------------------------- semantic IDs


class CFAlignParams(FeaturizerParams):
    """DAS: the collaborative signal the RQ-VAE is aligned with while it trains."""

    #: weight of the InfoNCE alignment loss next to reconstruction + commitment
    weight: float = Field(0.5, gt=0.0)
    #: size of the collaborative item vectors (truncated SVD of the normalised user-item matrix)
    dim: int = Field(64, gt=0)
    temperature: float = Field(0.1, gt=0.0)


class SemanticIDsParams(FeaturizerParams):
    """``semantic_ids``: residual quantization of a parent embedding version into integer code tuples.

    Defaults follow TIGER (Rajput et al. 2023): 3 levels x 256 codes plus a de-duplication level, an RQ-VAE
    with a 32-d latent and a 512-256-128 MLP, commitment weight 0.25.
    """

    method: Literal["rqvae", "rqkmeans"] = "rqvae"
    levels: int = Field(3, ge=1, le=8)
    codebook_size: int = Field(256, ge=2)
    #: append a level that numbers items sharing a tuple (0, 1, ...) so every item's tuple is unique
    dedup: bool = True
    seed: int = 0
    latent_dim: int = Field(32, gt=0)
    hidden: list[int] = Field(default_factory=lambda: [512, 256, 128])
    epochs: int = Field(200, gt=0)
    batch_size: int = Field(1024, gt=0)
    lr: float = Field(1e-3, gt=0.0)
    commitment_weight: float = Field(0.25, ge=0.0)
    #: MMGRec: smooth the parent vectors over the user-item graph for this many hops first (0 = off)
    graph_layers: int = Field(0, ge=0)
    #: DAS: train the RQ-VAE jointly with an alignment to collaborative item vectors (null = off)
    cf_align: CFAlignParams | None = None
    #: interactions the graph / CF signal reads: all but each user's last ``holdout`` in time order (2 = the
    #: leave-one-out valid and test targets never shape the codes)
    holdout: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _effective(self) -> "SemanticIDsParams":
        vae_only = "only applies to method: rqvae"
        for key in ("latent_dim", "hidden", "epochs", "batch_size", "lr", "commitment_weight", "cf_align"):
            self._only_with(key, self.method == "rqvae", vae_only)
        self._only_with("holdout", self.graph_layers > 0 or self.cf_align is not None,
                        "only applies with graph_layers > 0 or cf_align (the options that read interactions)")
        if any(h <= 0 for h in self.hidden):
            raise ValueError("hidden layer sizes must be positive")
        return self

    @property
    def reads_interactions(self) -> bool:
        return self.graph_layers > 0 or self.cf_align is not None
