"""The user documentation matches the app: links resolve, the augmentation table is the presets'
values, and the export page's loading snippets in docs/export.md are the app's and run on a real
bundle."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
USER_DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md",
             *(DOCS / n for n in ("getting-started.md", "strategies.md", "augmentation.md", "export.md",
                                  "cli.md", "troubleshooting.md", "packaging.md", "distributed.md"))]
SNIPPET_BUNDLE = "exported/digits"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_links_and_images_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code is not a link
    if doc.name == "README.md":  # its screenshot gallery is rendered separately (docs/screenshots/render.py)
        text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
            continue
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", file.read_text(encoding="utf-8"), flags=re.M)
            if anchor not in {_anchor(h) for h in headings}:
                broken.append(target)
    assert broken == []


def test_every_user_doc_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in USER_DOCS[2:]:
        assert f"docs/{doc.name}" in readme, doc.name


def test_augmentation_table_lists_the_presets_values():
    from transfer_studio.core import augment

    text = (DOCS / "augmentation.md").read_text(encoding="utf-8")
    v = {p: augment._preset_values(p) for p in augment.PRESETS}

    def cells(fn) -> str:
        return " | ".join(fn(v[p]) for p in augment.PRESETS)

    def on(t, field, fmt="{}", off="off"):
        return lambda pv: fmt.format(pv[t][field]) if pv[t]["enabled"] else off

    rows = [
        f"| Random resized crop (smallest share of the image) | "
        f"{cells(on('random_resized_crop', 'scale_min', off='off (centre crop)'))} |",
        f"| Horizontal flip (probability) | {cells(on('hflip', 'p'))} |",
        f"| Vertical flip | {cells(on('vflip', 'p'))} |",
        f"| Rotation (largest angle) | {cells(on('rotation', 'degrees', '{:.0f}°'))} |",
        f"| Colour jitter (strength) | {cells(on('color_jitter', 'strength'))} |",
        f"| Automatic augmentation (TrivialAugmentWide) | {cells(lambda pv: 'on' if pv['auto_augment']['enabled'] else 'off')} |",
        "| Random erasing (probability, largest area) | "
        + cells(lambda pv: f"{pv['random_erasing']['p']}, {pv['random_erasing']['max_area']}"
                if pv["random_erasing"]["enabled"] else "off") + " |",
    ]
    for row in rows:
        assert row in text, row


# -- export snippets ----------------------------------------------------------------------------------
def _snippets() -> dict[str, str]:
    from transfer_studio.ui.pages import export as page

    return {"onnx": page.onnx_snippet(SNIPPET_BUNDLE), "python": page.python_snippet(SNIPPET_BUNDLE),
            "pt2": page.pt2_snippet(SNIPPET_BUNDLE)}


def test_export_doc_shows_the_export_pages_snippets():
    text = (DOCS / "export.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    for name, snippet in _snippets().items():
        assert snippet in blocks, f"docs/export.md: the {name} snippet differs from ui/pages/export.py"


def test_export_doc_snippets_classify_like_the_app(tmp_path):
    spec = importlib.util.spec_from_file_location("run_factory", ROOT / "tests" / "core" / "run_factory.py")
    run_factory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_factory)  # type: ignore[union-attr]
    from transfer_studio.core import export
    from transfer_studio.core.predict import Predictor

    run = run_factory.make_run(tmp_path, {"cat": 4, "dog": 4, "fox": 4}, val=0.5)
    export.export_run(run, tmp_path / SNIPPET_BUNDLE, ["safetensors", "onnx", "pt2"])
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (45, 60, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    expected = Predictor.from_bundle(tmp_path / SNIPPET_BUNDLE).predict_paths([tmp_path / "photo.png"], 3)
    top = [g["label"] for g in expected[0]["top_k"]]

    procs = {}
    for name, code in _snippets().items():
        (tmp_path / f"{name}.py").write_text(code)
        procs[name] = subprocess.Popen([sys.executable, f"{name}.py", "photo.png"], cwd=tmp_path,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        labels = [line.split(":")[0] for line in out.strip().splitlines()]
        assert labels[0] == top[0], (name, out, expected)
        assert sorted(labels) == sorted(top), (name, out, expected)
