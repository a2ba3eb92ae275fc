"""Run a sentence-transformers model through torch, ONNX Runtime or OpenVINO (one job: the forward pass).

Why this module exists, and why it does not use sentence-transformers' own ``backend="onnx"``:
that backend needs ``optimum-onnx`` / ``optimum-intel``, and no release of either resolves with
``transformers>=5`` (optimum-onnx 0.1.0 pins ``transformers<4.58``; optimum-intel 2.2.0 pins
``transformers<5.6`` and 2.0/2.1 ``safetensors<0.8``, which transformers 5.24 cannot use). So the
runtimes are built directly on the maintained libraries that do install:

- the model's whole module stack (Transformer -> Pooling -> Normalize, whatever the model folder
  declares) is exported once with ``torch.onnx.export`` (the TorchScript exporter: the dynamo one
  needs ``onnxscript``), dynamic batch and sequence axes, so pooling and normalization are the
  model's own, not re-implemented here;
- ``onnx``: :class:`onnxruntime.InferenceSession` on that file (CPU; ``device: cuda`` uses the
  ``CUDAExecutionProvider`` when the installed onnxruntime has it, else :class:`Unavailable`);
- ``openvino``: ``openvino.Core().read_model(<the same ONNX file>)`` compiled for ``CPU`` with
  ``INFERENCE_PRECISION_HINT=f32`` (so a CPU with bf16/AMX does not silently lower precision);
- ``quantize: int8``: :func:`onnxruntime.quantization.quantize_dynamic` (int8 per-channel weights,
  activations quantized per batch at run time) of the MatMuls, except the two projections that
  read outlier-heavy activations (the attention output and the FFN down projection, named
  ``.../output/dense``): quantizing those too dropped the minimum cosine to fp32 from 0.991 to
  0.985 on a 2,000-text sample of the benchmark's MovieLens texts (fp32 vs int8 in
  bench/features/RESULTS_text_runtimes.md: min 0.991 over all 10,000). OpenVINO int8 reads that same
  int8 ONNX file (``nncf`` is not installed, so there is no OpenVINO-native int8 here). Dynamic
  quantization scales activations per batch tensor, so an int8 vector depends slightly on which
  texts share its batch (cosine >= 0.96 between one text embedded alone and inside a batch of 32):
  int8 versions are close to fp32, not bit-reproducible across different shard layouts. (The
  batch-independent alternative, weight-only ``MatMulNBits`` 8-bit, needs ``onnx-ir`` and is no
  faster than fp32 on an AVX2 CPU.)

Tokenization stays the sentence-transformers tokenizer (``model.preprocess``: same
``max_seq_length`` truncation), and texts are batched longest-first like ``encode`` does, so padding
stays small. Threads: every runtime uses ``torch.get_num_threads()`` intra-op threads, so
``torch.set_num_threads`` / ``OMP_NUM_THREADS`` governs all three alike.

Exported files are a cache under ``$MMFEAT_CACHE/onnx`` (default ``~/.cache/mmfeat/onnx``), keyed by
the weights' sha256 and the versions of the libraries that wrote them; each file is written under a
temporary name and renamed, so two processes exporting at once never read half a file.

The optional libraries are imported through :func:`require_extra` (by name, never an ``import``
statement): that gives the ``pip install 'mmfeat[onnx]'`` message when they are missing, and keeps
onnxruntime / openvino out of the torch runtime's code fingerprint (their versions are added to the
fingerprint by :func:`runtime_fingerprint` only where they compute the values).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from mmfeat.featurizers.cache import MODELS
from mmfeat.featurizers.registry import Unavailable, require_extra

log = logging.getLogger(__name__)

#: The runtimes ``params.runtime`` can name; ``torch`` is ``SentenceTransformer.encode`` itself.
RUNTIMES = ("torch", "onnx", "openvino")
#: ``params.quantize``: ``int8`` only with an exported runtime.
QUANTIZE = ("none", "int8")
#: Bump when the export or quantization recipe changes: a new cache folder, never a stale file.
EXPORT_FORMAT = 1
#: ONNX opset of the export (17: LayerNormalization is one op; onnxruntime and OpenVINO read it).
OPSET = 17
#: MatMuls left in float32 by ``quantize: int8`` (the projections that read outlier-heavy activations).
INT8_KEEP_FLOAT = "/output/dense/"
#: Which packages each runtime needs (import name, mmfeat extra).
_EXTRAS = {"onnx": [("onnxruntime", "onnx"), ("onnx", "onnx")],
           "openvino": [("openvino", "openvino"), ("onnx", "openvino"), ("onnxruntime", "openvino")]}

_EXPORT_LOCK = threading.Lock()


class TextRuntime(Protocol):
    """The forward pass of one loaded model: texts in, float32 sentence embeddings out.

    The output is what ``SentenceTransformer.encode(texts, normalize_embeddings=normalize)`` returns:
    the model's own module stack (a stack ending in ``Normalize`` returns unit vectors either way).
    """

    def encode(self, texts: Sequence[str], batch_size: int, normalize: bool = False) -> np.ndarray: ...


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class TorchRuntime:
    """``SentenceTransformer.encode``, the call the embedder always made (the default and the reference)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def encode(self, texts: Sequence[str], batch_size: int, normalize: bool = False) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                 normalize_embeddings=normalize, show_progress_bar=False)


class _ExportedRuntime:
    """Length-sorted batches through the model's tokenizer, each batch run by ``run_batch``."""

    def __init__(self, model: Any, input_names: Sequence[str], run_batch: Callable[[dict[str, np.ndarray]], np.ndarray],
                 dim: int) -> None:
        self.model = model
        self.input_names = list(input_names)
        self.run_batch = run_batch
        self.dim = dim

    def encode(self, texts: Sequence[str], batch_size: int, normalize: bool = False) -> np.ndarray:
        out = np.empty((len(texts), self.dim), np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # what encode sorts by
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            features = self.model.preprocess([texts[i] for i in idx])
            feed = {name: features[name].numpy() for name in self.input_names}
            out[idx] = self.run_batch(feed)
        return _unit(out) if normalize else out


# ----------------------------------------------------------------------------------------- versions
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def runtime_libraries(runtime: str) -> dict[str, str]:
    """Installed versions of the libraries that compute a runtime's values (empty for torch, whose
    libraries the code fingerprint already records)."""
    if runtime == "torch":
        return {}
    names = {"onnx": ["onnx", "onnxruntime"], "openvino": ["onnx", "onnxruntime", "openvino"]}[runtime]
    return {name: _version(name) for name in names}


def runtime_fingerprint(runtime: str, quantize: str) -> dict[str, Any]:
    """The keys a non-default runtime adds to a text embedder's fingerprint; ``{}`` for torch, so the
    torch fingerprint (and every version id computed before runtimes existed) is unchanged.

    Example:
        >>> runtime_fingerprint("torch", "none")
        {}
        >>> sorted(runtime_fingerprint("onnx", "int8"))
        ['quantize', 'runtime', 'runtime_libraries']
    """
    if runtime == "torch":
        return {}
    return {"runtime": runtime, "quantize": quantize, "runtime_libraries": runtime_libraries(runtime)}


def require_runtime(runtime: str) -> None:
    """Import every package ``runtime`` needs, or raise :class:`MissingDependency` naming the extra."""
    for module, extra in _EXTRAS.get(runtime, []):
        require_extra(module, extra, f"text_embedding runtime {runtime!r}")


# ------------------------------------------------------------------------------------- export cache
def export_dir(name: str, weights_sha256: str) -> Path:
    """The cache folder of one model's exported files: its weights and the exporting libraries."""
    from mmfeat.featurizers.registry import cache_dir

    key = json.dumps({"weights_sha256": weights_sha256, "format": EXPORT_FORMAT, "opset": OPSET,
                      **{d: _version(d) for d in ("torch", "transformers", "sentence-transformers", "onnx")}},
                     sort_keys=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_dir() / "onnx" / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _atomic(target: Path, write: Callable[[Path], None]) -> Path:
    """Write ``target`` through ``write(tmp)`` and a rename: a reader sees no file or a whole one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{target.name}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _input_names(model: Any) -> list[str]:
    """The tensors the model's tokenizer produces (``input_ids``, ``attention_mask``, ...), in order."""
    import torch

    sample = model.preprocess(["a", "b c"])
    return [k for k, v in sample.items() if isinstance(v, torch.Tensor)]


def _export_fp32(model: Any, target: Path) -> None:
    """``torch.onnx.export`` of the whole module stack (tokens -> the model's sentence embedding)."""
    import torch

    names = _input_names(model)
    sample = model.preprocess(["a short text", "a somewhat longer text, so the batch is padded"])
    extra = {k: v for k, v in sample.items() if not isinstance(v, torch.Tensor)}  # e.g. modality: text
    twin = copy.deepcopy(model).to("cpu").eval()  # never touch the shared, cached model
    for module in twin.modules():  # eager attention exports as plain ops that onnxruntime fuses
        if hasattr(module, "set_attn_implementation") and hasattr(module, "config"):
            try:
                module.set_attn_implementation("eager")
            except (ValueError, AttributeError, NotImplementedError):
                pass

    class _Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = twin

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st({**dict(zip(names, tensors)), **extra})["sentence_embedding"]

    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"sentence_embedding": {0: "batch"}}

    def write(tmp: Path) -> None:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript exporter deprecation + tracer warnings
            torch.onnx.export(_Stack().eval(), tuple(sample[n] for n in names), str(tmp), dynamo=False,
                              input_names=names, output_names=["sentence_embedding"], dynamic_axes=axes,
                              opset_version=OPSET, do_constant_folding=True)

    _atomic(target, write)


class _QuantizerChatter(logging.Filter):
    """Drops what ``quantize_dynamic`` logs on the root logger: an INFO line per skipped tensor, and the
    advice to pre-process (shape inference, which ``DefaultTensorType`` already covers). The CLI runs
    the root logger at INFO, so without this a one-time quantization prints ~40 lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and "pre-processing before quantization" not in record.getMessage()


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 (per-channel weights) of the MatMuls, except those named by :data:`INT8_KEEP_FLOAT`."""
    onnx = require_extra("onnx", "onnx", "quantize: int8")
    quantization = require_extra("onnxruntime.quantization", "onnx", "quantize: int8")
    graph = onnx.load(str(source), load_external_data=False).graph
    keep = [n.name for n in graph.node if n.op_type == "MatMul" and INT8_KEEP_FLOAT in n.name + "/"]

    def write(tmp: Path) -> None:
        root, chatter = logging.getLogger(), _QuantizerChatter()
        root.addFilter(chatter)  # a logger filter: only records logged on the root logger itself
        try:
            quantization.quantize_dynamic(
                str(source), str(tmp), weight_type=quantization.QuantType.QInt8, per_channel=True,
                op_types_to_quantize=["MatMul"], nodes_to_exclude=keep,
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.removeFilter(chatter)

    _atomic(target, write)


def onnx_file(model: Any, name: str, weights_sha256: str, quantize: str = "none") -> Path:
    """The model's ONNX file (exported on first use, then reused from the cache).

    Args:
        model: the loaded ``SentenceTransformer`` (read only: the export works on a copy).
        name: the backbone's name, for the folder name and the log line.
        weights_sha256: the weights' hash (the cache key).
        quantize: ``none`` (float32) or ``int8`` (the quantized copy, made from the float32 file).

    Returns:
        The path of the ``.onnx`` file.

    Raises:
        MissingDependency: ``onnx`` / ``onnxruntime`` are not installed.

    Example:
        >>> path = onnx_file(model, "all-MiniLM-L6-v2", weights_hash(folder))  # doctest: +SKIP
    """
    require_extra("onnx", "onnx", "exporting a text model to ONNX")
    folder = export_dir(name, weights_sha256)
    fp32 = folder / "model.onnx"
    with _EXPORT_LOCK:
        if not fp32.exists():
            log.info("exporting %s to ONNX (one-time, cached at %s)", name, fp32)
            _export_fp32(model, fp32)
        if quantize == "none":
            return fp32
        int8 = folder / f"model.int8-ort{_version('onnxruntime')}.onnx"
        if not int8.exists():
            log.info("quantizing %s to int8 (one-time, cached at %s)", name, int8)
            _quantize_int8(fp32, int8)
        return int8


# ------------------------------------------------------------------------------------------ runtimes
def _threads() -> int:
    import torch

    return max(1, int(torch.get_num_threads()))


def _onnx_providers(device: str | None) -> list[str]:
    """onnxruntime execution providers for ``device`` (cpu; cuda needs the CUDA provider installed)."""
    ort = require_extra("onnxruntime", "onnx", "text_embedding runtime 'onnx'")
    if device in (None, "cpu"):
        return ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Unavailable(
                f"runtime onnx with device {device!r} needs onnxruntime's CUDAExecutionProvider (the "
                f"onnxruntime-gpu package); this onnxruntime has {ort.get_available_providers()}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"runtime onnx runs on cpu or cuda, got device {device!r}")


def _onnx_runtime(model: Any, path: Path, providers: list[str], dim: int) -> _ExportedRuntime:
    ort = require_extra("onnxruntime", "onnx", "text_embedding runtime 'onnx'")
    threads = _threads()

    def load() -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=providers)

    session = MODELS.get_or_create(("onnxruntime", str(path), tuple(providers), threads), load)
    names = [i.name for i in session.get_inputs()]
    return _ExportedRuntime(model, names, lambda feed: session.run(None, feed)[0], dim)


def _openvino_runtime(model: Any, path: Path, dim: int) -> _ExportedRuntime:
    ov = require_extra("openvino", "openvino", "text_embedding runtime 'openvino'")
    threads = _threads()

    def load() -> Any:
        core = ov.Core()
        return core.compile_model(core.read_model(str(path)), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})

    compiled = MODELS.get_or_create(("openvino", str(path), threads), load)
    names = [i.get_any_name() for i in compiled.inputs]
    local = threading.local()  # an infer request is not thread-safe: one per thread

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        return np.asarray(request.infer(feed)[compiled.outputs[0]], np.float32)

    return _ExportedRuntime(model, names, run, dim)


def build_runtime(model: Any, runtime: str, quantize: str, *, name: str, weights_sha256: str,
                  device: str | None = None) -> TextRuntime:
    """The runtime that computes ``model``'s sentence embeddings.

    Args:
        model: the loaded ``SentenceTransformer`` (tokenizer, and the source of the export).
        runtime: ``torch`` | ``onnx`` | ``openvino``.
        quantize: ``none`` | ``int8`` (``int8`` needs ``onnx`` or ``openvino``).
        name: the backbone name (cache folder, log line).
        weights_sha256: the weights' hash (the export cache key).
        device: ``None``/``cpu``; ``cuda`` only with ``onnx`` (CUDAExecutionProvider).

    Returns:
        An object with ``encode(texts, batch_size) -> float32 [n, dim]``.

    Raises:
        ValueError: an unknown runtime / quantize, ``int8`` with torch, or a device the runtime lacks.
        MissingDependency: the runtime's package is not installed (names the ``onnx`` / ``openvino`` extra).
        Unavailable: ``device: cuda`` with an onnxruntime that has no CUDA provider.

    Example:
        >>> rt = build_runtime(model, "onnx", "int8", name="all-MiniLM-L6-v2", weights_sha256=sha)  # doctest: +SKIP
        >>> rt.encode(["a cat"], batch_size=64).shape  # doctest: +SKIP
        (1, 384)
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    if runtime == "torch":
        if quantize != "none":
            raise ValueError("quantize: int8 needs runtime onnx or openvino (torch runs float32)")
        return TorchRuntime(model)
    require_runtime(runtime)
    if quantize == "int8":
        log.warning("%s: int8 scales activations per batch, so each vector depends slightly on the texts that share "
                    "its batch (min cosine to float32 0.99 on MovieLens); a run with another shard size, or a resumed "
                    "one, can publish a different version id. Use quantize: none where versions must reproduce", name)
    if runtime == "openvino" and device not in (None, "cpu"):
        raise ValueError(f"runtime openvino runs on cpu here, got device {device!r}")
    providers = _onnx_providers(device) if runtime == "onnx" else []
    path = onnx_file(model, name, weights_sha256, quantize)
    dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
              else model.get_sentence_embedding_dimension())
    if runtime == "onnx":
        return _onnx_runtime(model, path, providers, dim)
    return _openvino_runtime(model, path, dim)


__all__ = ["RUNTIMES", "QUANTIZE", "TextRuntime", "TorchRuntime", "build_runtime", "onnx_file", "export_dir",
           "runtime_fingerprint", "runtime_libraries", "require_runtime"]
