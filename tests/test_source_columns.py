"""A source-level problem belongs to the columns it touches: a feature set that does not read the
bad column keeps the item, one that reads it gets a ``read`` error row naming that column."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.sources import SourceTables, load_source, microlens_mini_root
from mmfeat.pipelines.store.feature_store import FeatureStore
from tests.test_sources import _errors

MINI = microlens_mini_root()
PREFIX = "MicroLens-100k"


class Echo:
    """A 2-d 'embedder' of any input (text or a media path): deterministic, loads nothing."""

    name, input_kind, output = "echo", "text", OutputSpec("embedding", 2, "float32")
    accepts = ("text", "image", "video")

    def __init__(self) -> None:
        self.seen: list[str] = []

    def fingerprint(self) -> dict[str, str]:
        return {"kind": "echo"}

    def __call__(self, inputs):
        self.seen += list(inputs)
        return [Result(value=np.array([len(str(t)), 1.0], np.float32)) for t in inputs]


def _dataset(tmp_path: Path, bad: bool = True) -> SourceTables:
    """Four items with real media files. With ``bad``: item 2's image path escapes the root,
    item 3's description is not UTF-8 and item 4's video is a symlink out of the root."""
    root = tmp_path / "data"
    (root / "media").mkdir(parents=True)
    for i in range(1, 5):
        (root / "media" / f"{i}.jpg").write_bytes(f"jpg {i}".encode())
        (root / "media" / f"{i}.mp4").write_bytes(f"mp4 {i}".encode())
    if bad:
        (tmp_path / "outside.mp4").write_bytes(b"secret")
        (root / "media" / "4.mp4").unlink()
        os.symlink(tmp_path / "outside.mp4", root / "media" / "4.mp4")
    image2, desc3 = (b"../../etc/passwd", b"Caf\xe9 au lait") if bad else (b"media/2.jpg", b"Cafe au lait")
    rows = [b"item_id,title,description,image_uri,video_uri",
            b"1,Red shoe,Leather,media/1.jpg,media/1.mp4",
            b"2,Blue hat,Wool," + image2 + b",media/2.mp4",
            b"3,Green tea," + desc3 + b",media/3.jpg,media/3.mp4",
            b"4,Gold ring,Metal,media/4.jpg,media/4.mp4"]
    (root / "items.csv").write_bytes(b"\n".join(rows) + b"\n")
    return load_source("generic", root, items_file="items.csv")


def _spec(name: str, inp: dict) -> FeatureSetSpec:
    return FeatureSetSpec(name=name, kind="fake", input=inp)


SPECS = {
    "title_emb": {"text_fields": ["title"]},
    "desc_emb": {"text_fields": ["description"]},
    "image_emb": {"media": "image_uri"},
    "video_emb": {"media": "video_uri"},
}


def _rows(store: FeatureStore, s: SourceTables, name: str) -> dict[str, dict]:
    spec = _spec(name, SPECS[name])
    planned = plan_inputs(s.items, spec, data_root=s.root)
    FeatureSetJob(store, "ds", spec, Echo(), planned, shard_size=2).run_all(0.5, progress=False)
    return {r["item_id"]: r for r in store.read_table("ds", name).to_pylist()}


def test_each_feature_set_fails_only_the_items_whose_column_it_reads(tmp_path: Path) -> None:
    s = _dataset(tmp_path)
    assert "row_error" not in s.items.column_names  # no problem here invalidates a whole row
    store = FeatureStore(tmp_path / "store")

    title = _rows(store, s, "title_emb")
    assert {i: r["status"] for i, r in title.items()} == {"1": "ok", "2": "ok", "3": "ok", "4": "ok"}

    image = _rows(store, s, "image_emb")
    assert [i for i, r in image.items() if r["status"] != "ok"] == ["2"]
    assert image["2"]["stage"] == "read"
    assert image["2"]["error"].startswith("image_uri: '../../etc/passwd' resolves to ")
    assert "outside the data root" in image["2"]["error"]

    desc = _rows(store, s, "desc_emb")
    assert [i for i, r in desc.items() if r["status"] != "ok"] == ["3"]
    assert desc["3"]["stage"] == "read"
    assert desc["3"]["error"].startswith("description: items.csv line 4: bytes not valid utf-8 (0xe9")

    video = _rows(store, s, "video_emb")
    assert [i for i, r in video.items() if r["status"] != "ok"] == ["4"]  # item 2's bad image is not its problem
    assert video["4"]["stage"] == "read"
    assert video["4"]["error"].startswith("video_uri: 'media/4.mp4' resolves to ")
    assert "image_uri" not in video["4"]["error"]


def test_clean_feature_sets_keep_their_keys_when_another_column_goes_bad(tmp_path: Path) -> None:
    """The title set reads nothing that broke: its planned keys (so its version id) are exactly
    those of a source where the image, description and video are fine."""
    bad = _dataset(tmp_path / "bad")
    clean = _dataset(tmp_path / "clean", bad=False)
    assert not [c for c in clean.items.column_names if c.endswith("error")]
    spec = _spec("title_emb", SPECS["title_emb"])
    assert plan_inputs(bad.items, spec).keyed() == plan_inputs(clean.items, spec).keyed()


def test_planner_joins_row_and_column_reasons_and_names_its_own_media_problems(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "folder.jpg").mkdir(parents=True)
    (root / "ok.jpg").write_bytes(b"x")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    items = pa.table({
        "item_id": ["1", "2", "3", "4", "5", "6"],
        "title": ["a", None, "c", "d", "e", "f"],
        "tags": ["t", "t", "t", "t", "t", "t"],
        "image_uri": [str(root / "ok.jpg"), str(root / "gone.jpg"), str(root / "folder.jpg"),
                      str(root / "link.jpg"), str(root / "ok.jpg"), str(root / "ok.jpg")],
        "title__error": [None, "f.csv line 3: bytes not valid utf-8", None, None, None, None],
        "tags__error": [None, "f.csv line 9: bytes not valid utf-8", None, None, None, None],
        "row_error": [None, None, None, None, "item id '5' appears on data rows 5 and 7", None],
    })
    text = plan_inputs(items, _spec("t", {"text_fields": ["title", "tags"]}))
    assert text.pre_errors[1] == ("read", "title: f.csv line 3: bytes not valid utf-8; "
                                          "tags: f.csv line 9: bytes not valid utf-8")
    assert text.pre_errors[4] == ("read", "item id '5' appears on data rows 5 and 7")  # a whole-row problem
    assert [e is None for e in text.pre_errors] == [True, False, True, True, False, True]
    only_tags = plan_inputs(items, _spec("g", {"text_fields": ["tags"]}))
    assert only_tags.pre_errors[1] == ("read", "tags: f.csv line 9: bytes not valid utf-8")
    image = plan_inputs(items, _spec("i", {"media": "image_uri"}), data_root=root)
    reasons = [e[1] if e else None for e in image.pre_errors]
    assert reasons[0] is None and reasons[5] is None  # item 2's bad title is not the image set's problem
    assert reasons[1] == f"image_uri: file not found: {root / 'gone.jpg'}"
    assert reasons[2] == f"image_uri: is a directory, not a file: {root / 'folder.jpg'}"
    assert reasons[3].startswith("image_uri: refused: ") and "outside the data root" in reasons[3]
    assert reasons[4] == "item id '5' appears on data rows 5 and 7"


# ----------------------------------------------------------------------------- every adapter


_problems = _errors  # item id -> {column: reason}: the one helper both suites use


def test_microlens_problems_land_in_their_columns(tmp_path: Path) -> None:
    root = tmp_path / "ml"
    shutil.copytree(MINI, root)
    outside = tmp_path / "elsewhere.mp4"
    shutil.copy(root / "videos" / "3.mp4", outside)
    (root / "videos" / "3.mp4").unlink()
    os.symlink(outside, root / "videos" / "3.mp4")  # a video linked out of the root: video, not image
    lv = root / f"{PREFIX}_likes_and_views.txt"
    lines = lv.read_text().splitlines()
    k = next(n for n, line in enumerate(lines) if line.startswith("8\t"))
    lines[k] = "8\t" + lines[k].split("\t")[1] + "\tmany"  # likes fine, views not a number
    lv.write_text("\n".join(lines) + "\n")
    tg = root / "tags_to_summary.csv"
    tags = tg.read_bytes().split(b"\n")
    t = next(n for n, line in enumerate(tags) if line.startswith(b"11,"))
    tags[t] += b"\xff"
    tg.write_bytes(b"\n".join(tags))
    s = load_source("microlens", root)
    got = _problems(s)
    assert set(got) == {"3", "8", "11"}
    assert list(got["3"]) == ["video_uri"] and "outside the data root" in got["3"]["video_uri"]
    assert list(got["8"]) == ["views"] and "'many' is not a number" in got["8"]["views"]
    assert list(got["11"]) == ["tags"] and "bytes not valid utf-8" in got["11"]["tags"]
    rows = {r["item_id"]: r for r in s.items.to_pylist()}
    assert rows["8"]["likes"] is not None and rows["8"]["views"] is None
    assert rows["11"]["tags"] is None and rows["11"]["title"]
    assert rows["3"]["video_uri"] is None and rows["3"]["image_uri"]
    assert s.column_errors == {"tags": 1, "video_uri": 1, "views": 1} and s.num_row_errors == 0


def test_mmrec_bad_description_spares_the_title(tmp_path: Path) -> None:
    (tmp_path / "baby.inter").write_text("userID\titemID\n0\t0\n0\t1\n")
    (tmp_path / "meta-baby.csv").write_bytes(b"itemID,title,description\n0,Bottle,Glass\n1,Spoon,Sil\xffver\n")
    s = load_source("mmrec", tmp_path)
    assert _problems(s) == {"1": {"description": "meta-baby.csv line 3: bytes not valid utf-8 (0xff at byte 51)"}}
    assert s.items.column("title").to_pylist() == ["Bottle", "Spoon"]
    assert s.items.column("description").to_pylist() == ["Glass", None]


def test_movielens_bad_genre_spares_the_title(tmp_path: Path) -> None:
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\n1\ta\t5\n1\tb\t2\n")
    (tmp_path / "toy.item").write_bytes(b"item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                        b"a\tA Film\tDrama\nb\tB Film\tCom\xffedy\n")
    s = load_source("movielens", tmp_path, variant="toy")
    got = _problems(s)
    assert list(got) == ["b"] and list(got["b"]) == ["genres"]
    assert s.items.column("title").to_pylist() == ["A Film", "B Film"]
    assert s.items.column("genres").to_pylist() == ["Drama", None]


def test_generic_bad_bytes_in_columns_nobody_loads_touch_no_item(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "items.csv").write_bytes(b"item_id,title,note\n1,Plain,ok\n2,Tea,n\xe9e\n")
    (tmp_path / "inter.csv").write_bytes(b"user_id,item_id,comment\nu,1,fine\nu,2,caf\xe9\n")
    with caplog.at_level(logging.WARNING, logger="mmfeat.sources"):
        s = load_source("generic", tmp_path, items_file="items.csv", interactions_file="inter.csv",
                        text_columns=["title"])
    assert _problems(s) == {} and s.items.column("title").to_pylist() == ["Plain", "Tea"]
    assert s.interactions.column("item_id").to_pylist() == ["1", "2"]  # the comment is not read
    assert "items.csv: ignored 1 cell(s): bytes not valid utf-8 in column 'note', which is not loaded (line 3)" \
        in caplog.text
    assert "inter.csv: ignored 1 cell(s)" in caplog.text and "'comment'" in caplog.text


def test_problem_columns_are_aligned_without_a_python_loop_per_item() -> None:
    """RowProblems.columns aligns reasons with an Arrow hash lookup; many clean ids, few problems."""
    from mmfeat.pipelines.sources._read import RowProblems

    ids = [str(i) for i in range(100_000)]
    p = RowProblems()
    p.cell("99999", "title", "bad title")
    p.cell("7", "image_uri", "bad image")
    p.row("5", "repeated")
    cols = p.columns(ids)
    assert list(cols) == ["image_uri__error", "title__error", "row_error"]
    assert cols["title__error"].null_count == len(ids) - 1 and cols["title__error"][99999].as_py() == "bad title"
    assert cols["image_uri__error"][7].as_py() == "bad image" and cols["row_error"][5].as_py() == "repeated"
    assert RowProblems().columns(ids) == {}
