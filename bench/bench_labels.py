"""The label-issue finder on folders with labels flipped on purpose, next to a plain baseline.

For each generated folder (bench/advisor_data.py's photo, glyph and texture domains: the finder was
developed on scikit-learn's digits, never on these) and each seed, a share of the labels is flipped
to a random other class; both methods rank every image by self-confidence (the out-of-fold
probability of its given label), and the score is the precision at the number flipped: the share of
flipped images among the m lowest-ranked, m = the number flipped.

* finder: ``training.label_check.find_issues`` (the app's and ``check-labels``'s method);
* baseline: scikit-learn's LogisticRegression (default C, standardised features) in 5 stratified
  folds (tests/helpers/labels.py).

Both see the same backbone features (``label_check.image_features``, the bundled EfficientNet-Lite0).
A second part times the blockwise neighbour search on random features up to 50,000 images.

    OMP_NUM_THREADS=1 python bench/bench_labels.py [--seeds 5] [--per-class 40] [--write]

``--write`` puts the tables into docs/labels.md between the BENCH_LABELS marks.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

MARK = "<!-- BENCH_LABELS -->"
DOC = ROOT / "docs" / "labels.md"


def _features(folder: Path, image_size: int):
    import numpy as np

    from transfer_studio.config import DataSpec, ModelSpec, Project, TrainSpec
    from transfer_studio.core import dataset
    from transfer_studio.training.label_check import image_features

    report = dataset.scan(str(folder))
    project = Project(name="bench", model=ModelSpec("efficientnet_lite0"), data=DataSpec(root=str(folder)),
                      train=TrainSpec(device="cpu", image_size=image_size, num_workers=0))
    x, _ = image_features(project, report.root, report.files, len(report.classes))
    return x.numpy(), np.asarray(report.labels), len(report.classes)


def quality(seeds: int, per_class: int, shares: list[float], image_size: int, work: Path) -> list[dict]:
    import advisor_data
    import numpy as np
    from helpers.labels import flip_labels, sklearn_baseline

    from transfer_studio.core.label_issues import precision_at
    from transfer_studio.training.label_check import find_issues

    rows = []
    for domain in advisor_data.DOMAINS:
        for share in shares:
            ours, base, secs, base_secs, acc = [], [], [], [], []
            for seed in range(seeds):
                folder = advisor_data.make_folder(domain, work / f"{domain}-{seed}", per_class, seed, "train",
                                                  size=96)
                x, clean, k = _features(folder, image_size)
                noisy, flipped = flip_labels(clean, k, share, seed)
                t0 = time.perf_counter()
                p, method = find_issues(x, noisy, k, seed=seed)
                secs.append(time.perf_counter() - t0)
                acc.append(method["cv_accuracy"])
                ours.append(precision_at(p[np.arange(len(noisy)), noisy], flipped))
                t0 = time.perf_counter()
                base.append(precision_at(sklearn_baseline(x, noisy, 5, seed), flipped))
                base_secs.append(time.perf_counter() - t0)
                print(f"  {domain:8s} {share:.0%} seed {seed}: finder {ours[-1]:.3f}  baseline {base[-1]:.3f}",
                      file=sys.stderr, flush=True)
            rows.append({"domain": domain, "images": len(clean), "share": share, "flipped": len(flipped),
                         "ours": ours, "base": base, "cv_accuracy": statistics.mean(acc), "seconds": statistics.mean(secs),
                         "base_seconds": statistics.mean(base_secs)})
    return rows


def scaling(sizes: list[int], dim: int) -> list[dict]:
    import numpy as np

    from transfer_studio.core import label_issues

    out = []
    rng = np.random.default_rng(0)
    for n in sizes:
        # Random features with planted near-duplicates: every 100th image is a noisy copy of another.
        x = rng.standard_normal((n, dim), dtype=np.float32)
        copies = np.arange(0, n - 1, 100)
        x[copies + 1] = x[copies] + 0.05 * rng.standard_normal((len(copies), dim), dtype=np.float32)
        unit = label_issues.normalise(x)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        nb = label_issues.neighbours(unit, 10)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        found = {tuple(p) for p in nb.pairs.tolist()}
        out.append({"n": n, "dim": dim, "seconds": seconds, "pairs": len(nb.pairs),
                    "planted_found": sum((int(i), int(i) + 1) in found for i in copies), "planted": len(copies),
                    "features_mb": unit.nbytes / 2**20, "block_mb": label_issues.BLOCK * n * 4 / 2**20,
                    "peak_growth_mb": max(0, peak - before) / 1024})
        print(f"  {n:,} x {dim}: {seconds:.1f} s", file=sys.stderr, flush=True)
        del x, unit, nb
    return out


def _ms(values: list[float]) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"


def render(rows: list[dict], scale: list[dict], args: argparse.Namespace) -> str:
    lines = [f"Precision at the number flipped (mean ± standard deviation over {args.seeds} seeds; each seed a "
             f"freshly generated folder and a fresh draw of flipped labels), {args.per_class} images per class, "
             f"5 classes, features of the bundled EfficientNet-Lite0 at {args.image_size} px:", "",
             "| folder | images | flipped | probe accuracy on the noisy labels | finder | baseline (sklearn LR, 5 folds) "
             "| finder better | finder s | baseline s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wins = sum(a > b for a, b in zip(r["ours"], r["base"], strict=True))
        ties = sum(a == b for a, b in zip(r["ours"], r["base"], strict=True))
        lines.append(f"| {r['domain']} | {r['images']} | {r['flipped']} ({r['share']:.0%}) | {r['cv_accuracy']:.0%} | "
                     f"{_ms(r['ours'])} | "
                     f"{_ms(r['base'])} | {wins} of {len(r['ours'])}" + (f" ({ties} tied)" if ties else "")
                     + f" | {r['seconds']:.2f} | {r['base_seconds']:.2f} |")
    all_ours = [v for r in rows for v in r["ours"]]
    all_base = [v for r in rows for v in r["base"]]
    lines += ["", f"Over all {len(all_ours)} folders: finder {_ms(all_ours)}, baseline {_ms(all_base)}.", ""]
    if scale:
        lines += ["Blockwise neighbour search (10 nearest neighbours and every pair at cosine similarity 0.97 or "
                  "more) on random features with a planted near-duplicate every 100 images, one thread:", "",
                  "| images | dimensions | seconds | planted duplicates found | features | one block | peak memory growth |",
                  "|---|---|---|---|---|---|---|"]
        for s in scale:
            lines.append(f"| {s['n']:,} | {s['dim']} | {s['seconds']:.1f} | {s['planted_found']} of {s['planted']} | "
                         f"{s['features_mb']:.0f} MB | {s['block_mb']:.0f} MB | {s['peak_growth_mb']:.0f} MB |")
    lines += ["", f"(`OMP_NUM_THREADS=1 python bench/bench_labels.py --seeds {args.seeds} --per-class "
              f"{args.per_class} --image-size {args.image_size}"
              + (f" --scale {','.join(str(s) for s in args.scale)}" if args.scale else "") + "`)"]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    from transfer_studio.config import atomic_write_text

    old = DOC.read_text(encoding="utf-8")
    if old.count(MARK) < 2:
        raise SystemExit(f"{DOC} has no pair of {MARK} marks")
    a = old.index(MARK)
    b = old.index(MARK, a + len(MARK)) + len(MARK)
    atomic_write_text(DOC, old[:a] + f"{MARK}\n{text.rstrip()}\n{MARK}" + old[b:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--shares", default="0.1,0.2", help="shares of labels flipped (default 0.1,0.2)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--scale", default="5000,10000,20000,50000",
                        help="image counts for the neighbour-search timing ('' to skip)")
    parser.add_argument("--dim", type=int, default=1280, help="feature dimensions for the timing (Lite0's)")
    parser.add_argument("--work", default=None, help="folder for the generated images (default: a temp folder)")
    parser.add_argument("--write", action="store_true", help="write the tables into docs/labels.md")
    args = parser.parse_args()
    args.scale = [int(s) for s in args.scale.split(",") if s.strip()]
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        os.environ.setdefault("TS_FEATURE_CACHE", str(work / "feature_cache"))
        rows = quality(args.seeds, args.per_class, [float(s) for s in args.shares.split(",")], args.image_size, work)
    scale = scaling(args.scale, args.dim)
    text = render(rows, scale, args)
    print(text)
    if args.write:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
