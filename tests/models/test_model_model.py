"""The Model page's model without Qt: the graph and freeze status built in jobs from the project's
operations on meta-device networks (plain data back, no network kept), freeze clicks and surgery as
undoable edits, stale answers dropped, the worker-side pool of meta networks (one job at a time), the
training overlay, loading and downloading from the catalog, and the page's texts. Jobs run in the
test's thread (``helpers.page_models.Jobs``); the networks are real (resnet18 at 64 px)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch
from helpers.page_models import Jobs, record

from transfer_studio.config import ModelSpec, Project, SurgeryOp
from transfer_studio.ui.models import model_browser, model_network
from transfer_studio.ui.models import model_text as text
from transfer_studio.ui.models.model_model import ModelModel
from transfer_studio.ui.models.model_network import MetaNetworks, project_key, structure_key
from transfer_studio.ui.models.model_units import features_of

EVENTS = ModelModel.EVENTS
LAYER1 = 147_968  # resnet18's layer1 parameters
RESNET18 = 11_689_512


@pytest.fixture
def setup(session):
    jobs = Jobs()
    model = ModelModel(session, jobs)
    seen = record(model, EVENTS)
    model.reconcile()
    return SimpleNamespace(host=session, jobs=jobs, model=model, seen=seen)


def no_network_in(obj, seen=None) -> None:
    """Nothing reachable from ``obj`` (through this package's objects and containers) is a network."""
    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None or isinstance(obj, (str, int, float, bool, bytes)):
        return
    seen.add(id(obj))
    assert not isinstance(obj, (torch.nn.Module, torch.Tensor)), obj
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("transfer_studio", "helpers")):
        items = list(vars(obj).values())
    elif hasattr(obj, "__slots__") and type(obj).__module__.startswith("transfer_studio"):
        items = [getattr(obj, s, None) for s in obj.__slots__]
    else:
        return
    for item in items:
        no_network_in(item, seen)


def frozen_layers(model, prefix):
    return {n: st.freeze for n, st in model.status.nodes.items() if n.startswith(prefix + ".") and st.total}


# -- the graph and its colours ---------------------------------------------------------------------------
def test_the_graph_is_plain_data_built_in_a_job(setup):
    m, seen = setup.model, setup.seen
    assert [j.name for j in setup.jobs.started] == ["model-display"]
    d = m.display
    assert d.architecture == "ResNet" and d.input_shape == (1, 3, 64, 64) and d.head == "fc"
    assert d.units[:3] == ["conv1", "bn1", "layer1.0"] and d.key == project_key(setup.host.project)
    assert d.hierarchy.top_blocks == ["[stem]", "layer1", "layer2", "layer3", "layer4", "[head]"]
    assert m.trainable_counts() == (RESNET18, RESNET18)
    assert m.unit_status("b:layer1").freeze == "trainable" and m.unit_status("b:layer1").total == LAYER1
    assert len(seen["displayChanged"]) == 1 and seen["displayChanged"][0][1] is False  # another model
    no_network_in(m)
    assert m.model_line() == "resnet18 · random init"
    assert m.count_line() == (f"Trainable: {RESNET18} of {RESNET18} parameters (100%)",
                              f"{RESNET18} of {RESNET18} parameters trainable")


def test_a_freeze_click_is_an_undoable_edit_and_a_status_job(setup):
    host, m, jobs, seen = setup.host, setup.model, setup.jobs, setup.seen
    display = m.display
    m.toggle_freeze("b:layer1")
    assert [(o.op, o.target) for o in host.project.surgery] == [("freeze", "layer1")]
    assert host.project.train.user_set == ["freeze"] and host.done[-1].text == "Freeze layer1"
    assert jobs.started[-1].name == "freeze-status" and m.display is display  # no rebuild
    assert m.unit_status("b:layer1").freeze == "frozen" and m.status.key == project_key(host.project)
    assert set(frozen_layers(m, "layer1").values()) == {"frozen"}
    assert set(frozen_layers(m, "layer2").values()) == {"trainable"}
    assert m.trainable_counts() == (RESNET18 - LAYER1, RESNET18) and seen["statusChanged"]
    assert m.model_line() == "resnet18 · random init · 1 change"
    no_network_in(m)
    host.undo()
    assert host.project.surgery == [] and host.project.train.user_set == []
    assert m.unit_status("b:layer1").freeze == "trainable" and m.trainable_counts()[0] == RESNET18
    host.redo()
    assert m.unit_status("b:layer1").freeze == "frozen"
    m.toggle_freeze("b:layer1")  # a frozen block unfreezes
    assert [o.op for o in host.project.surgery] == ["freeze", "unfreeze"]
    assert m.unit_status("b:layer1").freeze == "trainable"
    assert [j.name for j in jobs.started].count("model-display") == 1


def test_freeze_up_to_and_train_from(setup):
    host, m = setup.host, setup.model
    assert m.freeze_up_to("b:layer2")
    assert (host.project.surgery[-1].op, host.project.surgery[-1].target) == ("freeze_before", "layer3.0")
    assert host.done[-1].text == "Freeze up to layer2"
    for block, state in (("[stem]", "frozen"), ("layer1", "frozen"), ("layer2", "frozen"), ("layer3", "trainable")):
        assert m.unit_status("b:" + block).freeze == state, block
    assert m.train_from("b:layer4")
    assert [(o.op, o.target) for o in host.project.surgery[-2:]] == [("unfreeze", "*"), ("freeze_before", "layer4.0")]
    assert m.unit_status("b:layer3").freeze == "frozen" and m.unit_status("b:layer4").freeze == "trainable"
    assert m.freeze_up_to("b:[head]")  # the last unit: everything
    assert (host.project.surgery[-1].op, host.project.surgery[-1].target) == ("freeze", "*")
    assert m.trainable_counts()[0] == 0
    assert m.freeze_all(False) and m.trainable_counts()[0] == RESNET18


def test_a_freeze_op_that_names_nothing_is_refused(setup):
    host, m, seen = setup.host, setup.model, setup.seen
    assert not m.push_freeze_ops([SurgeryOp("freeze", "layer9")], "Freeze layer9")
    assert seen["message"][-1][1] == "error" and "layer9" in seen["message"][-1][0]
    assert not m.push_freeze_ops([SurgeryOp("freeze_before", "nowhere")], "Freeze up to nowhere")
    assert host.project.surgery == [] and host.done == []
    assert not m.set_frozen("n:relu", True)  # no parameters: nothing to freeze
    m.toggle_freeze("n:relu")
    assert host.project.surgery == []


def test_a_status_answer_after_a_newer_job_started_is_dropped(setup):
    host, m = setup.host, setup.model
    setup.jobs.sync = False
    m.set_frozen("b:layer1", True)
    first = setup.jobs.started[-1]
    # A second click before the answer is refused: it would toggle what the graph shows a step late
    # (a double click froze layer1 twice).
    assert not m.set_frozen("b:layer1", True) and [op.target for op in host.project.surgery] == ["layer1"]
    host.project.surgery.append(SurgeryOp("freeze", "layer2"))  # another page rewrites the ops meanwhile
    host.mark_changed("surgery")
    second = setup.jobs.started[-1]
    assert first.name == second.name == "freeze-status" and m.status_job is second
    setup.jobs.run(second)
    assert m.unit_status("b:layer2").freeze == "frozen" and m.unit_status("b:layer1").freeze == "frozen"
    setup.jobs.run(first)  # the older answer (layer1 only) arrives late: dropped
    assert m.unit_status("b:layer2").freeze == "frozen" and m.status.key == project_key(host.project)


def test_the_same_status_is_not_asked_for_twice_and_undo_of_a_pending_edit_is_followed(setup):
    host, m, jobs = setup.host, setup.model, setup.jobs
    jobs.sync = False
    m.set_frozen("b:layer1", True)  # marks "surgery" and "train": one job
    assert [j.name for j in jobs.started].count("freeze-status") == 1
    host.undo()  # back to the shown status: nothing to compute, the pending answer is void
    pending = jobs.started[-1]
    jobs.run(pending)
    assert m.status.key == project_key(host.project) and m.unit_status("b:layer1").freeze == "trainable"


# -- structural surgery ---------------------------------------------------------------------------------------
def test_replace_head_is_validated_then_recorded(setup):
    host, m, seen = setup.host, setup.model, setup.seen
    m.set_frozen("b:layer1", True)
    assert m.replace_head({"num_classes": 7, "dropout": 0.2})
    op = host.project.surgery[-1]
    assert (op.op, op.params) == ("replace_head", {"num_classes": 7, "dropout": 0.2})
    assert host.done[-1].text == "Replace head (7 classes)"
    nodes = m.display.hierarchy.nodes
    assert nodes["fc.1"].output_shape[-1] == 7 and m.unit_status("n:fc.1").modified
    assert m.unit_status("b:fc").modified and m.unit_status("b:layer1").freeze == "frozen"
    assert seen["displayChanged"][-1][1] is True  # the same model: the page keeps its place
    assert m.display.structure == structure_key(host.project) and m.status.key == project_key(host.project)
    host.undo()  # a structural undo rebuilds the graph from the project
    assert m.display.hierarchy.nodes["fc"].output_shape[-1] == 1000 and not m.unit_status("n:fc").modified
    assert m.unit_status("b:layer1").freeze == "frozen"


def test_invalid_surgery_changes_nothing(setup):
    host, m, seen = setup.host, setup.model, setup.seen
    display = m.display
    assert m.remove_layer("layer2.0.conv1")
    level, message = seen["message"][-1][1], seen["message"][-1][0]
    assert level == "error" and "was not applied" in message and "layer2.0" in message
    assert m.display is display and host.project.surgery == [] and host.done == []
    m.remove_layer("fc")
    assert "replace_head" in seen["message"][-1][0] and host.project.surgery == []
    assert m.insert_after("layer4", {"type": "Dropout", "p": 0.3})
    assert m.display.hierarchy.nodes["layer4.1"].type == "Dropout" and m.unit_status("n:layer4.1").modified


def test_surgery_answered_after_the_project_moved_on_is_not_recorded(setup):
    host, m, jobs = setup.host, setup.model, setup.jobs
    jobs.sync = False
    m.replace_head({"num_classes": 3})
    job = jobs.started[-1]
    assert not m.ready_for_edit()  # one edit at a time
    host.project.surgery = [SurgeryOp("freeze", "*")]  # another page
    host.mark_changed("surgery")
    jobs.run(job)
    assert [o.op for o in host.project.surgery] == ["freeze"] and host.done == []
    jobs.run(jobs.started[-1])
    assert m.unit_status("b:layer4").freeze == "frozen"


def test_a_rebuild_answer_after_a_newer_one_is_dropped(setup):
    host, m, jobs = setup.host, setup.model, setup.jobs
    jobs.sync = False
    host.project.surgery = [SurgeryOp("replace_head", "", {"num_classes": 3})]
    host.mark_changed("surgery")
    older = jobs.started[-1]
    host.project.surgery = [SurgeryOp("replace_head", "", {"num_classes": 4})]
    host.mark_changed("surgery")
    newer = jobs.started[-1]
    assert older.cancelled and older.name == newer.name == "model-display"
    jobs.run(newer)
    jobs.run(older)
    assert m.display.hierarchy.nodes["fc"].output_shape[-1] == 4


def test_ops_that_do_not_fit_show_the_build_error(setup):
    host, m, seen = setup.host, setup.model, setup.seen
    host.project.surgery = [SurgeryOp("freeze", "layer1"), SurgeryOp("unfreeze", "no_such_layer")]
    host.mark_changed("surgery")
    assert m.display is None and m.status is None
    graph_text, label = seen["displayFailed"][-1]
    assert "resnet18 could not be built" in graph_text and label == "resnet18 — not loaded"
    assert "surgery step 2 of 2" in seen["message"][-1][0] and "no_such_layer" in seen["message"][-1][0]
    assert not m.browser.buttons().replace_head
    host.project.surgery = []
    host.mark_changed("surgery")
    assert m.display is not None and m.trainable_counts()[0] == RESNET18


# -- the pool of meta networks (worker side) ------------------------------------------------------------------
def test_status_jobs_replay_freeze_ops_on_the_display_jobs_network(setup, monkeypatch):
    host, m = setup.host, setup.model
    network = model_network.import_core("network")
    built: list[str] = []
    original = network.build_network_meta
    monkeypatch.setattr(network, "build_network_meta", lambda p, **k: built.append(p.model.name) or original(p, **k))
    for unit in ("b:layer1", "b:layer2", "b:layer3"):
        m.set_frozen(unit, True)
    host.undo()
    assert built == []  # the display job left its network in the pool; freeze ops replay on it
    assert m.unit_status("b:layer3").freeze == "trainable" and m.unit_status("b:layer2").freeze == "frozen"


def test_a_network_is_lent_to_one_job_at_a_time():
    """Two threads asked for the same structure at once: an earlier session's shared network made
    one job's replace_head fail with "does not fit the network: 'custom'"."""
    pool = MetaNetworks()
    project = Project(model=ModelSpec("resnet18", weights="none"))
    project.train.image_size = 64
    head = project.copy()
    head.surgery = [SurgeryOp("replace_head", "", {"num_classes": 5})]
    errors: list[BaseException] = []
    nets: list[int] = []
    lock = threading.Lock()

    def work(p: Project) -> None:
        try:
            for _ in range(3):
                lent = model_network.borrow(p, pool)
                with lock:
                    assert id(lent.net) not in nets  # nobody else holds it now
                    nets.append(id(lent.net))
                assert lent.net.fc.out_features == (5 if p.surgery else 1000)
                with lock:
                    nets.remove(id(lent.net))
                pool.give(lent.key, lent.net, lent.snapshot)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in (head, head, project)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(pool.keys()) >= 1


def test_the_pool_restores_the_flags_of_its_structure():
    pool = MetaNetworks()
    project = Project(model=ModelSpec("resnet18", weights="none"))
    project.train.image_size = 64
    frozen = project.copy()
    frozen.surgery = [SurgeryOp("freeze", "*")]
    lent = model_network.borrow(frozen, pool)
    assert not any(p.requires_grad for p in lent.net.parameters())
    pool.give(lent.key, lent.net, lent.snapshot)
    again = model_network.borrow(project, pool)  # same structure, no freeze op
    assert again.net is lent.net and all(p.requires_grad for p in again.net.parameters())


def test_a_kept_network_applies_only_the_freeze_ops_it_has_not_applied(monkeypatch):
    """Each click adds a freeze op; replaying all of them per status job grew to 113 ms after 200 clicks.
    A continued list applies only its new ops; an undone or changed one starts again from the flags of
    the structure. Every answer matches a network built afresh."""
    from transfer_studio.core import surgery

    pool = MetaNetworks()
    project = Project(model=ModelSpec("resnet18", weights="none"))
    project.train.image_size = 64
    project.surgery = [SurgeryOp("replace_head", "", {"num_classes": 5})]
    applied: list[str] = []
    real = surgery.apply_op
    monkeypatch.setattr(surgery, "apply_op", lambda net, op, shape: (applied.append(op.target), real(net, op, shape)))

    def flags(p: Project, into: MetaNetworks) -> dict[str, bool]:
        lent = model_network.borrow(p, into)
        try:
            return {n: q.requires_grad for n, q in lent.net.named_parameters()}
        finally:
            into.give(lent.key, lent.net, lent.snapshot, applied=lent.applied)

    flags(project, pool)  # the structure, built once
    steps = [[SurgeryOp("freeze", "*")], [SurgeryOp("unfreeze", "layer4")], [SurgeryOp("unfreeze", "layer3.1")]]
    ops = list(project.surgery)
    for step in steps:
        ops += step
        p = project.copy()
        p.surgery = list(ops)
        applied.clear()
        assert flags(p, pool) == flags(p, MetaNetworks())
        # the kept network applied only the new op; then the fresh one built from the replace_head ("") on
        assert applied[: len(step) + 1] == [*(o.target for o in step), ""]
    undone = project.copy()
    undone.surgery = ops[:-1]  # undo the last click: not a continuation, replayed from the structure
    applied.clear()
    assert flags(undone, pool) == flags(undone, MetaNetworks())
    assert applied[:3] == ["*", "layer4", ""]
    assert not flags(undone, pool)["layer3.1.conv1.weight"] and flags(undone, pool)["layer4.0.conv1.weight"]


# -- the training overlay -------------------------------------------------------------------------------------
def test_the_training_phase_recolours_without_touching_the_project(setup):
    host, m, seen = setup.host, setup.model, setup.seen
    m.freeze_all(True)
    host.trainingPhaseChanged.emit(SimpleNamespace(epoch=3, phase="unfrozen", description="unfroze layer4",
                                                   unfrozen=["layer4.0", "layer4.1"]))
    assert seen["overlayChanged"][-1] == "Training, epoch 3: unfroze layer4"
    assert m.unit_status("b:layer4").freeze == "trainable" and m.unit_status("b:layer3").freeze == "frozen"
    assert m.status.blocks["layer4"].freeze == "frozen" and [o.op for o in host.project.surgery] == ["freeze"]
    assert m.count_line()[1].startswith(str(m.status.blocks["layer4"].total))
    host.trainingPhaseChanged.emit(SimpleNamespace(epoch=5, phase="full", description="", unfrozen=[]))
    assert m.unit_status("b:[stem]").freeze == "trainable" and seen["overlayChanged"][-1] == "Training, epoch 5: full"
    host.set_training_active(True)
    host.set_training_active(False)
    assert m.overlay is None and seen["overlayChanged"][-1] == ""
    assert m.unit_status("b:layer4").freeze == "frozen"


# -- the catalog, loading, downloading --------------------------------------------------------------------------
def test_the_catalog_and_its_buttons(setup):
    seen, b = setup.seen, setup.model.browser
    b.load()
    assert len(b.infos) > 50 and seen["selectRequested"][-1] == "resnet18"
    info = b.info("resnet50")
    b.select(info)
    assert seen["selectionChanged"][-1] is info
    assert b.random_init  # the project's random init, as shown
    b.set_random_init(False)
    buttons = b.buttons()
    assert not buttons.load and buttons.download_visible and buttons.download_text.startswith("Download weights (")
    b.set_random_init(True)
    assert b.buttons().load
    b.set_random_init(False)
    b.load_selected()
    assert seen["message"][-1][1] == "warning" and info.weights_file in seen["message"][-1][0]
    b.select(None)
    b.load_selected()
    assert seen["message"][-1] == ("Select a model in the table first.", "info", "")


def test_load_another_model_then_undo(setup):
    host, m, b = setup.host, setup.model, setup.model.browser
    b.load()
    m.set_frozen("b:layer1", True)
    b.select(b.info("mobilenet_v3_small"))
    b.set_random_init(True)
    b.load_selected()
    assert host.project.model == ModelSpec("mobilenet_v3_small", "none") and host.project.surgery == []
    assert m.display.architecture == "MobileNetV3" and host.done[-1].text == "Load mobilenet_v3_small"
    assert setup.seen["displayChanged"][-1][1] is False
    host.undo()
    assert host.project.model.name == "resnet18" and m.display.architecture == "ResNet"
    assert m.unit_status("b:layer1").freeze == "frozen"


def test_a_weights_file_that_does_not_fit_changes_nothing(setup, tmp_path):
    from safetensors.torch import save_file

    host, m, seen = setup.host, setup.model, setup.seen
    bad = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(bad))
    m.browser.load()
    m.browser.select(m.browser.info("resnet18"))
    m.browser.load_weights_file(str(bad))
    assert seen["message"][-1][1] == "error" and "Could not load resnet18" in seen["message"][-1][0]
    assert host.project.model.weights == "none" and host.done == []


def test_an_image_size_the_new_model_cannot_take_is_reset(setup):
    host, m = setup.host, setup.model
    host.project.train.image_size = 96
    m.load_model("vit_b_16", "none")
    assert host.project.model.name == "vit_b_16" and host.project.train.image_size is None


def test_download_then_load(setup, monkeypatch):
    m, seen, jobs = setup.model, setup.seen, setup.jobs
    loaded: list[tuple[str, str]] = []
    monkeypatch.setattr(model_browser, "download_weights", lambda name, progress=None, cancel=None: name)
    monkeypatch.setattr(m, "load_model", lambda name, weights="DEFAULT": loaded.append((name, weights)))
    m.browser.load()
    m.browser.select(m.browser.info("resnet34"))
    m.browser.download_selected()
    assert loaded == [("resnet34", "DEFAULT")] and not m.browser.busy()
    assert [j.name for j in jobs.started][-2:] == ["download", "catalog"]

    def cancelled(name, progress=None, cancel=None):
        from transfer_studio.errors import Cancelled
        raise Cancelled()

    monkeypatch.setattr(model_browser, "download_weights", cancelled)
    m.browser.download_selected()
    assert seen["message"][-1] == ("Download of resnet34 cancelled; nothing was saved.", "info", "")


# -- the context menu and texts --------------------------------------------------------------------------------
def test_menu_state_and_selection_line(setup):
    m = setup.model
    state = m.menu_state("b:layer2", expanded=False)
    assert state.title == "layer2" and state.freeze and not state.unfreeze and state.remove and state.block
    head = m.menu_state("n:fc")
    assert not head.remove and head.insert and head.train_from
    assert not m.menu_state("n:relu").freeze  # no parameters
    assert features_of(m.display, "fc") == 1000 and features_of(m.display, "layer4") is None
    line = m.selection_line("n:layer1.0.conv1")
    assert line.startswith("<b>layer1.0.conv1</b> — Conv2d → 64×16×16") and "36,864 parameters (trainable)" in line
    assert m.default_num_classes() == (2, "No dataset chosen yet: set the number of classes you will train on.")


def test_texts():
    assert text.model_line(ModelSpec("resnet18", "/w/my.pth"), 2) == "resnet18 · my.pth · 2 changes"
    assert text.phase_line(SimpleNamespace(epoch=1, phase="head", description="")) == "Training, epoch 1: head"
    info = SimpleNamespace(name="x", weights_file="/h/x.pth", weights_url="http://u/x.pth", weights_size_mb=12.0,
                           weights_available_offline=False)
    assert "x.pth (12 MB) at /h/x.pth" in text.missing_weights_text(info)
    assert text.class_count_offer(5, SimpleNamespace(classes=["a"] * 5, root="/d")) == (
        5, "5 classes found in the dataset (/d).")
