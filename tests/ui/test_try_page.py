"""Try page: dropped pictures are classified by the trained model and by the original pretrained one;
Grad-CAM heat maps (core.gradcam) show where the trained model looked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch
from helpers.images import make_class_folder
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from torch import nn

from transfer_studio.config import ModelSpec, Project, RunRecord
from transfer_studio.core import gradcam
from transfer_studio.ui import worker
from transfer_studio.ui.pages.try_page import TryPage, expand_paths
from transfer_studio.ui.state import AppState

SHOTS = Path(__file__).resolve().parents[2] / "shots"
SAMPLES = Path(sklearn.datasets.__file__).parent / "images"  # scikit-learn's two sample photos


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run fine-tuned from the bundled (pretrained, offline) EfficientNet-Lite0: head only, 64 px."""
    from transfer_studio.training import fit

    base = tmp_path_factory.mktemp("try")
    data = make_class_folder(base / "data", {"cat": 6, "dog": 6}, size=32)
    project = Project(name="try", model=ModelSpec("efficientnet_lite0"))
    project.data.root, project.data.val_split = str(data), 0.5
    project.augment.preset = "none"
    t = project.train
    t.strategy, t.epochs, t.batch_size, t.image_size, t.device, t.num_workers = "head", 2, 8, 64, "cpu", 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = fit(project, run_dir=base / "run")
    finally:
        torch.set_num_threads(threads)
    assert result.status == "finished"
    return {"run": Path(result.run_dir), "data": data}


@pytest.fixture
def make_page(qtbot, trained):
    made: list[TryPage] = []

    def make(run: Path | None = None, **ui) -> TryPage:
        run = run or trained["run"]
        project = Project(name="try", model=ModelSpec("efficientnet_lite0"))
        project.runs.append(RunRecord(run_dir=str(run), created="2024-05-01T10:00:00", model="efficientnet_lite0",
                                      strategy="head", epochs_completed=2, status="finished"))
        project.ui.update(ui)
        page = TryPage(AppState(project))
        qtbot.addWidget(page)
        page.resize(1100, 760)
        page.show()
        made.append(page)
        return page

    yield make
    for page in made:
        page.shutdown()
        assert not page.busy()
    worker.cancel_all()


def drop(page: TryPage, paths: list[Path]) -> bool:
    """A real drag-enter + drop of file URLs onto the page; True when the drag was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(page.rect().center())
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, event)
    return event.isAccepted()


def idle(qtbot, page: TryPage, timeout: int = 120000) -> None:
    qtbot.waitUntil(lambda: not page.busy(), timeout=timeout)


def expected_top(run: Path, image: Path, k: int) -> list[tuple[str, float]]:
    from transfer_studio.core import export
    from transfer_studio.core.network import project_preprocess
    from transfer_studio.core.predict import Predictor

    model, project = export.load_run(run)
    res = Predictor(model, project_preprocess(project), project.data.classes).predict_paths([image], top_k=k)
    return [(g["label"], g["probability"]) for g in res[0]["top_k"]]


def test_a_dropped_photo_gets_both_models_predictions(qtbot, make_page, trained, tmp_path):
    page = make_page()
    assert not page.empty.isHidden() and page.stack.currentIndex() == 0
    flower = tmp_path / "flower.jpg"
    shutil.copy(SAMPLES / "flower.jpg", flower)
    # Only local files are accepted.
    mime = QMimeData()
    mime.setText("not a file")
    enter = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, enter)
    assert not enter.isAccepted()

    assert drop(page, [flower])
    assert page.paths == [str(flower)] and page.stack.currentIndex() == 1
    assert page.busy()  # off the GUI thread
    idle(qtbot, page)
    assert page.current_path() == str(flower)
    shown = page.trained_col.bars.rows()
    want = expected_top(trained["run"], flower, 2)
    assert [r[0] for r in shown] == [w[0] for w in want]
    assert [r[1] for r in shown] == pytest.approx([w[1] for w in want], abs=1e-5)
    assert sum(r[1] for r in shown) == pytest.approx(1.0, abs=1e-4)  # two classes: all of them
    pre = page.pretrained_col.bars.rows()
    assert len(pre) == 5 and pre[0][0] == "daisy"  # the real pretrained network, ImageNet classes
    assert "efficientnet_lite0" in page.pretrained_col.title()
    assert page.state.project.ui["try_images"] == [str(flower)]

    # Top-k changes what is shown without predicting again; it is page state.
    page.topk_spin.setValue(3)
    assert len(page.pretrained_col.bars.rows()) == 3 and page.state.project.ui["try_top_k"] == 3
    assert not page.busy()

    # A folder: its images are added (recursively), other files ignored; unreadable images are reported.
    folder = tmp_path / "more"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "china.jpg", folder / "sub" / "china.jpg")
    (folder / "notes.txt").write_text("hello")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert drop(page, [folder])
    idle(qtbot, page)
    assert page.paths == [str(flower), str(folder / "broken.png"), str(folder / "sub" / "china.jpg")]
    assert str(folder / "broken.png") in page.unreadable and "could not be read" in page.banner.text()
    page.select_path(str(folder / "sub" / "china.jpg"))
    page.topk_spin.setValue(5)
    top5 = [r[0] for r in page.pretrained_col.bars.rows()]
    assert {"palace", "church", "castle", "monastery", "dome"} & set(top5)
    page.select_path(str(folder / "broken.png"))
    assert page.trained_col.note.text().startswith("Not readable")
    assert page.trained_col.bars.rows() == []
    SHOTS.mkdir(exist_ok=True)
    page.select_path(str(flower))
    qtbot.wait(200)
    assert page.grab().save(str(SHOTS / "try_test.png"))


def test_heat_map_and_page_state(qtbot, make_page, trained, tmp_path):
    flower = tmp_path / "flower.jpg"
    shutil.copy(SAMPLES / "flower.jpg", flower)
    page = make_page(try_images=[str(flower)], try_heatmap=True, try_top_k=2)
    # Reopened with saved state: the image list, top-k and heat-map choice are back and predicted.
    assert page.paths == [str(flower)] and page.topk_spin.value() == 2 and page.heatmap_box.isChecked()
    qtbot.waitUntil(lambda: bool(page.heatmaps), timeout=120000)
    idle(qtbot, page)
    (hm,) = page.heatmaps.values()
    assert hm.path == str(flower) and hm.overlay.dtype == np.uint8 and hm.overlay.shape == (64, 64, 3)
    assert hm.label == page.trained_col.bars.rows()[0][0]  # it explains the top class
    assert "Grad-CAM" in page.preview_caption.text() and hm.label in page.preview_caption.text()
    assert page.preview.pixmap().width() > 0
    page.heatmap_box.setChecked(False)
    assert page.state.project.ui["try_heatmap"] is False
    assert page.preview_caption.text() == "flower.jpg"
    page.clear_images()
    assert page.paths == [] and page.state.project.ui["try_images"] == [] and page.stack.currentIndex() == 0


def test_a_random_init_model_has_no_pretrained_column(qtbot, make_page, trained, tmp_path):
    run = tmp_path / "random_init_run"
    shutil.copytree(trained["run"], run)
    snap = json.loads((run / "project.json").read_text())
    snap["model"]["weights"] = "none"
    (run / "project.json").write_text(json.dumps(snap))
    page = make_page(run)
    image = make_class_folder(tmp_path / "imgs", {"cat": 1}, size=40) / "cat" / "cat_0000.png"
    assert page.add_paths([str(image)]) == 1
    idle(qtbot, page)
    assert len(page.trained_col.bars.rows()) == 2
    assert page.pretrained_col.bars.rows() == [] and "random weights" in page.pretrained_col.note.text()
    assert page.add_paths([str(tmp_path / "nothing-here")]) == 0 and "No images" in page.banner.text()
    # another source: a folder that is neither a run nor a bundle
    page.set_source(str(tmp_path / "imgs"))
    assert "neither a training run" in page.banner.text()


def test_expand_paths_limits_and_order(tmp_path):
    folder = make_class_folder(tmp_path / "f", {"a": 3, "b": 2}, size=8)
    paths, left = expand_paths([str(folder)], limit=4)
    assert [Path(p).name for p in paths] == ["a_0000.png", "a_0001.png", "a_0002.png", "b_0000.png"] and left == 1


def test_grad_cam_points_at_the_evidence():
    """A network whose class score is the mean brightness response: the heat map is on the bright patch."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(0.1)
        conv.bias.fill_(-0.05)
    head = nn.Linear(4, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, -1]]))
        head.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    for p in model.parameters():  # frozen, as in a head-only run: gradients still reach the activations
        p.requires_grad_(False)
    x = torch.zeros(1, 3, 32, 32)
    x[..., 20:28, 4:12] = 1.0
    heat, index, score, layer = gradcam.grad_cam(model, x)
    assert layer == "1" and index == 0 and 0.5 < score <= 1.0
    assert heat.shape == (32, 32) and heat.max() == pytest.approx(1.0) and heat.min() >= 0
    r, c = np.unravel_index(heat.argmax(), heat.shape)
    assert 19 <= r <= 28 and 3 <= c <= 12
    assert heat[20:28, 4:12].mean() > 5 * heat[:16, 16:].mean()
    assert all(p.grad is None for p in model.parameters())
    # the other class: its evidence is the absence of brightness, so nothing lights up positively
    heat1, index1, _, _ = gradcam.grad_cam(model, x, class_index=1)
    assert index1 == 1 and heat1.max() == 0.0
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    out = gradcam.overlay(img, heat)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out[:16, 16:].astype(int) - img[:16, 16:]).mean() < np.abs(out[20:28, 4:12].astype(int) - img[20:28, 4:12]).mean()
    with pytest.raises(ValueError):
        gradcam.overlay(img, heat[:10])


def test_grad_cam_layer_choice_keeps_a_usable_resolution():
    """The last feature map when it has at least 7x7 pixels, else the last weighted stage that has."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=3).eval()
    assert gradcam.find_target_layer(model, torch.zeros(1, 3, 224, 224)) == "layer4"  # 7x7
    assert gradcam.find_target_layer(model, torch.zeros(1, 3, 64, 64)) == "layer2"  # layer4 is 2x2, layer3 4x4
    heat, _, _, layer = gradcam.grad_cam(model, torch.randn(1, 3, 64, 64))
    assert layer == "layer2" and heat.shape == (64, 64) and np.isfinite(heat).all()


def test_with_no_trained_model_the_original_model_answers_and_the_page_says_what_is_missing(qtbot, tmp_path):
    """Issue 12.3: no trained model gave blank results, "Working…" for a non-image, and no pretrained column."""
    navigated = []
    state = AppState(Project(name="fresh", model=ModelSpec("efficientnet_lite0")))
    state.navigateRequested.connect(navigated.append)
    page = TryPage(state)
    qtbot.addWidget(page)
    page.resize(1100, 760)
    page.show()
    try:
        flower = tmp_path / "flower.jpg"
        shutil.copy(SAMPLES / "flower.jpg", flower)
        notes = tmp_path / "notes.txt"
        notes.write_text("not a picture")
        assert page.add_paths([str(notes)]) == 0
        assert "Not image files" in page.banner.text() and "notes.txt" in page.banner.text()
        assert page.paths == [] and not page.busy()

        assert page.add_paths([str(flower)]) == 1
        idle(qtbot, page)
        assert page.pretrained_col.bars.rows()[0][0] == "daisy"  # needs no trained model
        assert "efficientnet_lite0" in page.pretrained_col.title()
        note = page.trained_col.note
        assert note.isVisibleTo(page) and "No trained model yet" in note.text() and "Train page" in note.text()
        assert page.trained_col.bars.rows() == []
        note.linkActivated.emit("train")
        assert navigated == ["train"]
    finally:
        page.shutdown()
        worker.cancel_all()


def test_trying_pictures_does_not_mark_the_project_modified(qtbot, tmp_path):
    """Issue 12.10: using only the Try page led to an unsaved-changes prompt."""
    state = AppState(Project(name="fresh", model=ModelSpec("resnet18", weights="none")))
    state.path = tmp_path / "p.tsproj"
    page = TryPage(state)
    qtbot.addWidget(page)
    page.show()
    try:
        image = make_class_folder(tmp_path / "imgs", {"cat": 1}, size=16) / "cat" / "cat_0000.png"
        assert page.add_paths([str(image)]) == 1
        page.topk_spin.setValue(3)
        page.heatmap_box.setChecked(True)
        idle(qtbot, page)
        assert not state.modified
        # still remembered with the project when it is saved
        assert state.project.ui["try_images"] == [str(image)] and state.project.ui["try_top_k"] == 3
        assert state.project.ui["try_heatmap"] is True
    finally:
        page.shutdown()
        worker.cancel_all()


def test_the_preview_fits_the_room_it_gets(qtbot, tmp_path):
    """Issue 12 screenshots: at 1280x720 the preview was drawn at full size and cut off."""
    from PIL import Image

    state = AppState(Project(name="fresh", model=ModelSpec("resnet18", weights="none")))
    page = TryPage(state)
    qtbot.addWidget(page)
    page.resize(1100, 560)  # a short window: less height than the decoded preview
    page.show()
    try:
        photo = tmp_path / "tall.png"
        Image.new("RGB", (300, 600), (200, 40, 40)).save(photo)
        assert page.add_paths([str(photo)]) == 1
        qtbot.waitUntil(lambda: page.preview.pixmap() is not None and not page.preview.pixmap().isNull(),
                        timeout=60000)
        room = page.preview.contentsRect()
        pix = page.preview.pixmap()
        assert pix.height() <= room.height() and pix.width() <= room.width()
        assert abs(pix.width() / pix.height() - 0.5) < 0.02  # proportions kept
        page.resize(1100, 900)
        qtbot.wait(50)
        assert page.preview.pixmap().height() > pix.height()  # more room: a larger picture
    finally:
        page.shutdown()
        worker.cancel_all()
