"""The phantom radiology world: seeded, procedurally drawn images with questions whose answer is only in the image.

**These are drawings, not scans.** Every image is painted with numpy from a seed: an ellipse of "tissue" on a
background, a texture, noise, and one or more round "lesions". Three *modality styles* imitate the look of the
three modalities MedVLM-R1 reports (their contrast, background, noise and texture), nothing of their physics:

| style   | background | anatomy drawn                                   | lesions                        | noise  |
|---------|------------|-------------------------------------------------|--------------------------------|--------|
| `MRI`   | black      | a smooth grey head with soft texture             | bright, sharp (high contrast)  | low    |
| `CT`    | black      | a brain inside a white skull ring                | brighter than brain, lower contrast | grainy |
| `X-ray` | grey       | a chest: two dark lung fields and faint ribs     | pale nodules in the lung fields, soft edges | medium, vignetted |

The out-of-domain styles (CT, X-ray) keep the same kind of lesion (lighter than its surroundings) with less contrast
and more clutter: harder, not alien.

Questions (MedVLM-R1's multiple-choice shape, option order shuffled per item; 2 to 6 options over the three types):

| `question_type` | question                                   | option texts                              |
|-----------------|--------------------------------------------|-------------------------------------------|
| `count`         | How many lesions are visible in this image? | `1`, `2`, ... `6`                          |
| `size`          | How large is the lesion?                    | small, medium, large                      |
| `where`         | In which part of the image is the lesion?   | upper left, upper right, lower left, lower right |

Each question starts with the item's case number (`Case 600017. How large is the lesion?`), unique across every
split. Nothing in the question text tells the answer: the options of an item are its correct finding plus
distractors drawn from the same list, shuffled. **The registered set asks the `size` question only** (2 or
3 options): the tiny base model learns to perceive lesion size, not where a lesion is or how many there are (measured
for issue 15: `bench/results/cold_start_probe_*`). `make_items(types=ALL_TYPES)` and `build_phantom(types=...)` draw
every type.

**Splits** in MedVLM-R1's shape (`PHANTOM_TRAIN_SIZE` MRI training rows; 300 MRI in-domain and 300 CT and 300 X-ray
out-of-domain test rows). Every item is drawn from its own seed, `f"phantom-v{version}:{split}:{style}:{index}"`,
so the training and test items come from disjoint seeds; `medvlm-trl make-split phantom` writes both manifests
with image hashes and audits them (no overlap by id, image, pixels, near-duplicate image or question text can pass).
Test sets are **letter-balanced exactly**: within every option count k, each of the k letters is the answer
equally often, so a model that always answers one letter scores exactly the random-guess rate.

API (what the recipes, `eval`, the demo, the tiny base model and the tests use):

- `phantom_dir()`: the cached build (PNG images, `train.jsonl`, `test.jsonl`, `README.md`), made on first use.
- `load_phantom(split, root=None, modality=None)`: contract rows (`image` is an absolute PNG path), with the extra
  columns `question_type` and `finding` (the correct option's text).
- `make_items(split, style, n, ...)`: the rows of one split and style, in memory (`image` is a PIL image), for
  other draws (the base model's cold start uses `split="coldstart"`, a third disjoint seed range).
- `draw_image(style, spec, size, rng)`: one image; `balanced_schedule(...)`: the letter-balanced plan of a test set.
- `build_phantom(out_dir, types=...)`: write a phantom set into a folder (`phantom_dir()` does it once into the
  cache, with every question type; `types` makes a smaller world for experiments, loaded with `data_dir`);
- `phantom_manifests(root=None)`: the audited train and test manifests that `medvlm-trl make-split phantom` writes.

Registered as dataset name `phantom` (`medvlm_trl.data.registry`), splits `train` and `test`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medvlm_trl.data.prompts import LETTERS

PHANTOM_VERSION = "1"  # the item seeds; which types the registered set draws is DEFAULT_TYPES
STYLES = ("MRI", "CT", "X-ray")
TRAIN_STYLE = "MRI"
PHANTOM_TRAIN_SIZE = 600
PHANTOM_TEST_PER_STYLE = 300
IMAGE_SIZE = 112  # 4 x 4 merged Qwen2-VL image tokens (28 x 28 pixels each)

QUESTION_TYPES = {
    "count": ("How many lesions are visible in this image?", ["1", "2", "3", "4", "5", "6"]),
    "size": ("How large is the lesion?", ["small", "medium", "large"]),
    "where": ("In which part of the image is the lesion?", ["upper left", "upper right", "lower left", "lower right"]),
}
# Which question types the registered set draws (cycled in this order): the lesion size only, since the
# tiny base model (medvlm_trl.tiny_base) learns to perceive it, and not `where` or `count` (issue 15's measurements,
# bench/results/cold_start_probe_*); every type stays available through `make_items(types=...)` and
# `build_phantom(types=...)`.
ALL_TYPES = ("where", "size", "count")
DEFAULT_TYPES = ("size",)
SIZE_RADIUS = {"small": 0.045, "medium": 0.085, "large": 0.13}  # lesion radius as a fraction of the image side


@dataclass(frozen=True)
class LesionSpec:
    """What to draw: lesion centres (fractions of the side, y then x) and radii (fractions of the side)."""

    centers: tuple[tuple[float, float], ...]
    radii: tuple[float, ...]


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency texture in [-1, 1]: coarse random grid upsampled bilinearly."""
    coarse = rng.uniform(-1, 1, (scale + 1, scale + 1)).astype(np.float32)
    img = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def draw_image(style: str, spec: LesionSpec, size: int, rng: np.random.Generator) -> Image.Image:
    """Paint one phantom of `style` with the lesions of `spec`; RGB (grey levels), `size` x `size`."""
    if style not in STYLES:
        raise ValueError(f"unknown phantom style {style!r}; choose one of {list(STYLES)}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = 0.5 + rng.uniform(-0.02, 0.02), 0.5 + rng.uniform(-0.02, 0.02)
    ry, rx = 0.44 + rng.uniform(-0.02, 0.02), 0.40 + rng.uniform(-0.02, 0.02)
    body = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    texture = _smooth_noise(rng, size, 6)
    if style == "MRI":
        img = np.where(body, 0.42 + 0.06 * texture, 0.02)
        lesion_level, edge, noise = 0.95, 0.012, 0.025
    elif style == "CT":
        shell = ((yy - cy) / (ry + 0.035)) ** 2 + ((xx - cx) / (rx + 0.035)) ** 2 <= 1.0
        img = np.where(shell, 0.95, 0.0)
        img = np.where(body, 0.36 + 0.05 * texture, img)
        lesion_level, edge, noise = 0.70, 0.015, 0.06
    else:  # X-ray: a chest
        img = 0.30 + 0.05 * texture
        chest = ((yy - 0.52) / 0.46) ** 2 + ((xx - 0.5) / 0.47) ** 2 <= 1.0
        img = np.where(chest, 0.55 + 0.05 * texture, img)
        lungs = (((yy - 0.5) / 0.36) ** 2 + ((xx - 0.29) / 0.17) ** 2 <= 1.0) | (
            ((yy - 0.5) / 0.36) ** 2 + ((xx - 0.71) / 0.17) ** 2 <= 1.0
        )
        img = np.where(lungs, 0.22 + 0.04 * texture, img)
        ribs = (np.sin(yy * 2 * np.pi * 7 + 0.8 * np.abs(xx - 0.5) * 6) > 0.85) & chest
        img = img + 0.08 * ribs
        lesion_level, edge, noise = 0.72, 0.025, 0.04
    img = img.astype(np.float32)
    for (ly, lx), r in zip(spec.centers, spec.radii):
        d = np.sqrt((yy - ly) ** 2 + (xx - lx) ** 2)
        alpha = np.clip((r - d) / edge + 0.5, 0.0, 1.0)
        img = img * (1 - alpha) + lesion_level * alpha
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    if style == "X-ray":
        img = img * (1.0 - 0.35 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2))
    gray = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _region(style: str) -> tuple[float, float, float, float]:
    """Where lesion centres may go (y0, y1, x0, x1, fractions of the side): inside the tissue / lung fields."""
    return (0.2, 0.8, 0.2, 0.8) if style != "X-ray" else (0.25, 0.75, 0.18, 0.82)


def _place(style: str, radii: list[float], rng: random.Random, quadrant: str | None = None) -> LesionSpec:
    """Non-overlapping lesion centres inside the style's region (and the quadrant, for `where`)."""
    y0, y1, x0, x1 = _region(style)
    if quadrant is not None:
        ym, xm = (y0 + y1) / 2, (x0 + x1) / 2
        margin = 0.06
        y0, y1 = (y0, ym - margin) if quadrant.startswith("upper") else (ym + margin, y1)
        x0, x1 = (x0, xm - margin) if quadrant.endswith("left") else (xm + margin, x1)
    # the whole lesion lies inside the tissue (head) or the chest: its centre inside an ellipse shrunk by its radius
    (ey, ex, ay, ax) = (0.5, 0.5, 0.37, 0.33) if style != "X-ray" else (0.52, 0.5, 0.40, 0.41)
    centers: list[tuple[float, float]] = []
    for r in radii:
        for _ in range(2000):
            c = (rng.uniform(y0, y1), rng.uniform(x0, x1))
            inside = ((c[0] - ey) / (ay - r)) ** 2 + ((c[1] - ex) / (ax - r)) ** 2 <= 1.0
            if inside and all(np.hypot(c[0] - o[0], c[1] - o[1]) > r + ro + 0.03 for o, ro in zip(centers, radii)):
                centers.append(c)
                break
        else:
            raise RuntimeError(f"could not place {len(radii)} lesions in a {style} phantom")
    return LesionSpec(tuple(centers), tuple(radii))


def _spec_for(style: str, qtype: str, finding: str, rng: random.Random) -> LesionSpec:
    if qtype == "count":
        n = int(finding)
        return _place(style, [rng.uniform(0.035, 0.05) for _ in range(n)], rng)
    if qtype == "size":
        base = SIZE_RADIUS[finding]
        return _place(style, [base * rng.uniform(0.9, 1.1)], rng)
    return _place(style, [rng.uniform(0.05, 0.08)], rng, quadrant=finding)


def _max_options(qtype: str) -> int:
    return min(len(QUESTION_TYPES[qtype][1]), len(LETTERS))


def balanced_schedule(n: int, types: tuple[str, ...], rng: random.Random) -> list[tuple[str, int, int]]:
    """`n` items as (question type, option count k, index of the correct option), letter-balanced exactly.

    Types are cycled; within each type the option counts 2..max are used in turn, and for every (type, k) group the
    correct letter cycles through all k letters, so each group's size must be a multiple of k. The group sizes are
    chosen as the nearest multiples that add up; the order is shuffled with `rng`.
    """
    per_type = {t: n // len(types) + (i < n % len(types)) for i, t in enumerate(types)}
    items: list[tuple[str, int, int]] = []
    for qtype, count in per_type.items():
        ks = list(range(2, _max_options(qtype) + 1))
        sizes = _multiples(count, ks)
        for k, size in zip(ks, sizes):
            items += [(qtype, k, i % k) for i in range(size)]
    rng.shuffle(items)
    return items


def _multiples(total: int, ks: list[int]) -> list[int]:
    """Sizes s_k, each a multiple of k, summing to `total`, as even as possible (small search)."""
    best, best_spread = None, None
    target = total / len(ks)

    def search(i: int, left: int, acc: list[int]):
        nonlocal best, best_spread
        if i == len(ks) - 1:
            if left >= 0 and left % ks[i] == 0:
                cand = [*acc, left]
                spread = sum(abs(s - target) for s in cand)
                if best_spread is None or spread < best_spread:
                    best, best_spread = cand, spread
            return
        k = ks[i]
        lo, hi = max(0, int(target * 0.5) // k), int(target * 1.5) // k + 1
        for m in range(lo, hi + 1):
            if m * k <= left:
                search(i + 1, left - m * k, [*acc, m * k])

    search(0, total, [])
    if best is None:
        raise ValueError(f"cannot split {total} items over option counts {ks} with every letter equally often")
    return best


def _item_seed(split: str, style: str, index: int) -> str:
    return f"phantom-v{PHANTOM_VERSION}:{split}:{style}:{index}"


# Case numbers: unique per item across every split and style (split and style blocks of 100000).
_CASE_BLOCK = {"train": 1, "test": 2, "coldstart": 5}


def case_number(split: str, style: str, index: int) -> int:
    """The item's case number, printed before its question: the questions are templates, so without it two items
    with the same option list would read alike (and the audit's `question` check would call distinct items equal)."""
    block = _CASE_BLOCK.get(split, 9) * 3 + STYLES.index(style)
    return block * 100000 + index


def make_items(
    split: str,
    style: str,
    n: int,
    *,
    types: tuple[str, ...] = DEFAULT_TYPES,
    size: int = IMAGE_SIZE,
    balanced: bool | None = None,
) -> list[dict]:
    """`n` contract rows of one split and style, images as PIL (each item drawn from its own seed).

    `balanced` (default: for test splits) plans the rows with `balanced_schedule`; otherwise every item draws its
    question type, option count (2 to the type's maximum) and correct letter from its own seed.
    """
    balanced = split == "test" if balanced is None else balanced
    plan_rng = random.Random(f"{_item_seed(split, style, -1)}:plan")
    plan = balanced_schedule(n, types, plan_rng) if balanced else None
    rows = []
    for i in range(n):
        rng = random.Random(_item_seed(split, style, i))
        if plan is not None:
            qtype, k, correct_at = plan[i]
        else:
            qtype = types[rng.randrange(len(types))]
            k = rng.randint(2, _max_options(qtype))
            correct_at = rng.randrange(k)
        question, vocab = QUESTION_TYPES[qtype]
        finding = vocab[rng.randrange(len(vocab))]
        distractors = rng.sample([v for v in vocab if v != finding], k - 1)
        rng.shuffle(distractors)
        options = distractors[:correct_at] + [finding] + distractors[correct_at:]
        spec = _spec_for(style, qtype, finding, rng)
        image = draw_image(style, spec, size, np.random.default_rng(rng.getrandbits(64)))
        tag = style.lower().replace("-", "")
        rows.append(
            {
                "id": f"phantom-{split}-{tag}-{i:05d}",
                "image": image,
                "question": f"Case {case_number(split, style, i)}. {question}",
                "options": options,
                "answer": LETTERS[correct_at],
                "modality": style,
                "source": "phantom",
                "question_type": qtype,
                "finding": finding,
            }
        )
    return rows


def build_phantom(
    out_dir: str | os.PathLike,
    *,
    train_size: int = PHANTOM_TRAIN_SIZE,
    test_per_style: int = PHANTOM_TEST_PER_STYLE,
    size: int = IMAGE_SIZE,
    types: tuple[str, ...] = DEFAULT_TYPES,
) -> Path:
    """Write the phantom set: `images/*.png`, `train.jsonl` (MRI only), `test.jsonl` (every style), `README.md`.

    `types` restricts the question types (a smaller world for experiments, e.g. `bench/cold_start_probe.py`); the
    registered set (`phantom_dir()`) has all of them. Load such a folder with `load_phantom(split, root=folder)` or a
    recipe's `data_dir`."""
    unknown = sorted(set(types) - set(QUESTION_TYPES))
    if unknown or not types:
        raise ValueError(f"unknown phantom question types {unknown}; choose from {sorted(QUESTION_TYPES)}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    plan = [("train", TRAIN_STYLE, train_size)] + [("test", s, test_per_style) for s in STYLES]
    files = {"train": [], "test": []}
    for split, style, n in plan:
        for row in make_items(split, style, n, size=size, types=tuple(types)):
            name = f"images/{row['id']}.png"
            row["image"].save(out / name)
            row["image"] = name
            files[split].append(row)
    for split, rows in files.items():
        with open(out / f"{split}.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    (out / "README.md").write_text(__doc__ or "")
    return out


def phantom_dir() -> Path:
    """The cached phantom set, built on first use (a few seconds), keyed by `PHANTOM_VERSION`."""
    from medvlm_trl.tiny import build_once, cache_dir

    key = hashlib.sha1(f"{PHANTOM_VERSION}-{IMAGE_SIZE}-{PHANTOM_TRAIN_SIZE}-{DEFAULT_TYPES}".encode()).hexdigest()[:8]
    return build_once(cache_dir() / f"phantom-v{PHANTOM_VERSION}-{key}", build_phantom, marker="test.jsonl")


def load_phantom(
    split: str = "train", root: str | os.PathLike | None = None, modality: str | None = None
) -> list[dict]:
    """Contract rows of the phantom set's `train` or `test` split; `image` is an absolute PNG path."""
    from medvlm_trl.data.sample import read_split
    from medvlm_trl.data.schema import filter_rows

    rows = read_split(split, root, phantom_dir, "phantom")
    if modality is not None:
        rows = [r for r in rows if r["modality"] == modality]
    return list(filter_rows(rows))


def phantom_manifests(root: str | os.PathLike | None = None):
    """`(train manifest, test manifest, info)` of the phantom set, with image hashes, audited to be disjoint."""
    from medvlm_trl.data.audit import audit
    from medvlm_trl.data.manifest import manifest_from_rows

    settings = {"loader": "phantom", "version": PHANTOM_VERSION, "image_size": IMAGE_SIZE, "types": list(DEFAULT_TYPES)}
    train_rows, test_rows = load_phantom("train", root=root), load_phantom("test", root=root)
    common = dict(dataset="phantom", name="phantom", settings=settings, hash_images=True)
    train = manifest_from_rows(train_rows, split="train", **common)
    test = manifest_from_rows(test_rows, split="test", **common)
    report = audit(train, [test])
    if report.overlaps:  # distinct seeds draw distinct images; a bug here must not produce a leaky split
        raise AssertionError("the phantom split is not disjoint:\n" + report.summary())
    return train, test, {"pool": len(train_rows), "passed_over": {}}
