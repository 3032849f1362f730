"""core.surgery and core.layers: freezing, head replacement, layer swaps, validation by meta dry runs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from transfer_studio.config import Project, SurgeryOp
from transfer_studio.core import catalog, network
from transfer_studio.core.graph import dry_run
from transfer_studio.core.layers import adapt_conv_weight, build_layer
from transfer_studio.core.surgery import (
    SurgeryError,
    apply_op,
    apply_ops,
    find_head,
    freeze_state,
    modified_modules,
    ordered_blocks,
    param_counts,
)
from transfer_studio.errors import UserError

SHAPE = (1, 3, 64, 64)


def meta_model(name: str, **kwargs) -> nn.Module:
    if kwargs:  # a torchvision variant the catalog does not build (e.g. with auxiliary heads)
        return network.build_on_meta(lambda: torchvision.models.get_model(name, **kwargs))
    return network.build_on_meta(lambda: catalog.build_model(name, "none"))


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def op(kind: str, target: str = "", **params) -> SurgeryOp:
    return SurgeryOp(kind, target, params)


def structure(model: nn.Module) -> tuple:
    """Everything surgery may change: module tree, parameter shapes, trainable flags, records."""
    return (repr(model), [(n, tuple(p.shape), p.requires_grad) for n, p in model.named_parameters()],
            modified_modules(model))


# -- freezing ----------------------------------------------------------------------------------------------
def test_freeze_and_unfreeze_by_name_prefix_parameter_and_all() -> None:
    model = meta_model("resnet18")
    total = numel(model)
    assert param_counts(model) == (total, total)
    apply_op(model, op("freeze", "*"))
    assert param_counts(model) == (0, total)
    apply_op(model, op("unfreeze", "layer4*"))
    assert param_counts(model) == (numel(model.layer4), total)
    apply_op(model, op("freeze", "layer4.1.conv2"))
    apply_op(model, op("unfreeze", "fc.bias"))  # a single parameter
    assert param_counts(model)[0] == numel(model.layer4) - model.layer4[1].conv2.weight.numel() + 1000
    state = freeze_state(model)
    assert state["layer4"] is None and state["layer4.0"] is True and state["layer4.1.conv2"] is False
    assert state["fc"] is None and state["layer1"] is False and state[""] is None
    apply_op(model, op("unfreeze", ""))
    assert param_counts(model) == (total, total) and freeze_state(model)[""] is True


def test_freeze_bad_targets_say_what_exists() -> None:
    model = meta_model("resnet18")
    with pytest.raises(SurgeryError, match=r"no parameter name starts with 'layr4'.*did you mean layer4"):
        apply_op(model, op("freeze", "layr4*"))
    with pytest.raises(SurgeryError, match=r"no module or parameter named 'layer9'.*did you mean"):
        apply_op(model, op("freeze", "layer9"))
    with pytest.raises(SurgeryError, match=r"'relu' \(ReLU\) has no parameters"):
        apply_op(model, op("freeze", "relu"))
    assert param_counts(model)[0] == numel(model)


def test_freeze_before_a_block_or_a_stage() -> None:
    model = meta_model("resnet18")
    apply_op(model, op("freeze_before", "layer3.0"))
    state = freeze_state(model)
    assert [state[n] for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")] == \
        [False, False, False, False, True, True, True]
    other = meta_model("resnet18")
    apply_op(other, op("freeze_before", "layer3"))  # a stage stands for its first block
    assert freeze_state(other) == state
    with pytest.raises(SurgeryError, match=r"'layer7' is not one of the model's blocks.*conv1, bn1, layer1.0"):
        apply_op(model, op("freeze_before", "layer7"))
    vit = meta_model("vit_b_16")
    apply_op(vit, op("freeze_before", "encoder.layers.encoder_layer_6"))
    frozen = {n for n, p in vit.named_parameters() if not p.requires_grad}
    assert {"class_token", "encoder.pos_embedding", "conv_proj.weight"} <= frozen
    assert any(n.startswith("encoder.layers.encoder_layer_5.") for n in frozen)
    assert not any(n.startswith(("encoder.layers.encoder_layer_6.", "encoder.ln", "heads")) for n in frozen)


# -- the head ----------------------------------------------------------------------------------------------
# One model per head layout: fc, _fc, classifier[-1] (several shapes), heads.head, head, squeezenet's
# 1x1 conv, densenet's bare classifier, maxvit's multi-layer classifier (GoogLeNet/Inception: below).
FAMILIES = ["efficientnet_lite0", "resnet18", "efficientnet_b0", "vit_b_16", "swin_t", "squeezenet1_1",
            "densenet121", "mobilenet_v3_small", "convnext_tiny", "maxvit_t", "alexnet"]


@pytest.mark.parametrize("name", FAMILIES)
def test_replace_head_in_every_family(name: str) -> None:
    info = catalog.get_info(name)
    shape = (1, 3, max(info.min_size, 64), max(info.min_size, 64))
    model = meta_model(name)
    head = find_head(model)
    apply_ops(model, [op("freeze", "*"), op("replace_head", num_classes=7)], shape)
    assert dry_run(model, shape).shape == (1, 7)
    assert find_head(model) == head and head in modified_modules(model)
    new = model.get_submodule(head)
    assert (new.out_channels if isinstance(new, nn.Conv2d) else new.out_features) == 7
    assert param_counts(model)[0] == numel(new) > 0  # only the new head trains


def test_head_with_dropout_and_hidden_layer_then_again() -> None:
    model = meta_model("efficientnet_b0")
    apply_op(model, op("replace_head", num_classes=4, dropout=0.3, hidden=64), SHAPE)
    head = model.classifier[1]
    assert [type(m).__name__ for m in head] == ["Dropout", "Linear", "ReLU", "Linear"]
    assert (head[0].p, head[1].in_features, head[1].out_features, head[3].out_features) == (0.3, 1280, 64, 4)
    assert find_head(model) == "classifier.1.3" and modified_modules(model) == {"classifier.1"}
    assert ordered_blocks(model)[-2:] == ["classifier.1.1", "classifier.1.3"]
    apply_op(model, op("replace_head", num_classes=9), SHAPE)  # replaces the whole new head again
    assert isinstance(model.classifier[1], nn.Linear) and model.classifier[1].in_features == 1280
    squeeze = meta_model("squeezenet1_1")
    apply_op(squeeze, op("replace_head", num_classes=3, hidden=32), SHAPE)
    assert [type(m).__name__ for m in squeeze.classifier[1]] == ["Conv2d", "ReLU", "Conv2d"]
    assert dry_run(squeeze, SHAPE).shape == (1, 3)


@pytest.mark.parametrize("params, message", [
    ({"num_classes": 1}, r"num_classes >= 2 \(got 1\)"),
    ({"num_classes": 0}, r"num_classes >= 2 \(got 0\)"),
    ({}, r"num_classes >= 2 \(got None\)"),
    ({"num_classes": True}, r"num_classes >= 2"),
    ({"num_classes": "3"}, r"num_classes >= 2 \(got '3'\)"),
    ({"num_classes": 3, "dropout": 1.0}, r"dropout must be a probability"),
    ({"num_classes": 3, "hidden": 0}, r"hidden must be a whole number >= 1"),
    ({"num_classes": 3, "width": 5}, r"unknown params \['width'\]"),
])
def test_replace_head_rejects_bad_params_and_changes_nothing(params: dict, message: str) -> None:
    model = meta_model("resnet18")
    before = structure(model)
    with pytest.raises(SurgeryError, match=message):
        apply_op(model, SurgeryOp("replace_head", "", params), SHAPE)
    assert structure(model) == before
    assert issubclass(SurgeryError, UserError)


def test_auxiliary_heads_follow_the_main_head() -> None:
    google = meta_model("googlenet", aux_logits=True, init_weights=False)
    apply_op(google, op("replace_head", num_classes=5), SHAPE)
    assert google.aux1.fc2.out_features == google.aux2.fc2.out_features == google.fc.out_features == 5
    assert {"fc", "aux1.fc2", "aux2.fc2"} <= modified_modules(google)
    out = google.train()(torch.empty(2, 3, 96, 96, device="meta"))  # training mode returns the aux logits
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, 5)
    assert "aux1" not in " ".join(ordered_blocks(google))
    inception = meta_model("inception_v3", aux_logits=True, init_weights=False)
    apply_op(inception, op("replace_head", num_classes=6), (1, 3, 75, 75))
    assert inception.AuxLogits.fc.out_features == 6


# -- replacing, inserting, removing -------------------------------------------------------------------------
def test_one_channel_input_conv_keeps_the_pretrained_response() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    gray = torch.rand(2, 1, 64, 64)
    expected = model(gray.repeat(1, 3, 1, 1))
    old = model.conv1.weight.detach().clone()
    apply_op(model, op("replace", "conv1", layer={"type": "Conv2d", "in_channels": 1}), SHAPE)
    assert model.conv1.in_channels == 1 and model.conv1.stride == (2, 2) and model.conv1.kernel_size == (7, 7)
    assert torch.equal(model.conv1.weight, old.sum(1, keepdim=True))
    assert torch.allclose(model(gray), expected, atol=1e-4)  # the same logits for the grey image
    assert modified_modules(model) == {"conv1"}
    # The model's input is now 1 channel: later ops validate with that automatically.
    apply_op(model, op("replace_head", num_classes=3), SHAPE)
    assert model(gray).shape == (2, 3)
    assert torch.equal(adapt_conv_weight(old, 1, "mean"), old.mean(1, keepdim=True))
    six = adapt_conv_weight(old, 6)  # e.g. two stacked RGB images: equal channels, equal response
    assert six.shape == (64, 6, 7, 7) and torch.allclose(six.sum(1), old.sum(1), atol=1e-6)


def test_activation_swaps() -> None:
    model = meta_model("resnet18")
    apply_op(model, op("replace", "layer4*", layer={"type": "GELU"}), SHAPE)
    assert isinstance(model.layer4[0].relu, nn.GELU) and isinstance(model.layer4[1].relu, nn.GELU)
    assert isinstance(model.layer3[1].relu, nn.ReLU) and isinstance(model.relu, nn.ReLU)
    assert modified_modules(model) == {"layer4.0.relu", "layer4.1.relu"}
    apply_op(model, op("replace", "relu", layer={"type": "LeakyReLU", "negative_slope": 0.1}), SHAPE)
    assert isinstance(model.relu, nn.LeakyReLU) and model.relu.negative_slope == 0.1
    mobile = meta_model("mobilenet_v3_small")
    relus = sum(isinstance(m, nn.ReLU) for m in mobile.modules())
    apply_op(mobile, op("replace", "features*", layer={"type": "SiLU"}, of_type="Hardswish"), SHAPE)
    assert not any(isinstance(m, nn.Hardswish) for m in mobile.features.modules())
    assert sum(isinstance(m, nn.ReLU) for m in mobile.modules()) == relus
    with pytest.raises(SurgeryError, match="swaps activations only"):
        apply_op(model, op("replace", "layer1*", layer={"type": "Dropout"}), SHAPE)
    with pytest.raises(SurgeryError, match="no Hardswish activation under 'layer1'"):
        apply_op(model, op("replace", "layer1*", layer={"type": "GELU"}, of_type="Hardswish"), SHAPE)


def test_insert_after_and_shape_errors_undo_the_change() -> None:
    model = meta_model("efficientnet_b0")
    total = numel(model)
    apply_op(model, op("insert_after", "classifier.0", layer={"type": "Linear+ReLU"}), SHAPE)
    assert [type(m).__name__ for m in model.classifier[0]] == ["Dropout", "Sequential"]
    assert model.classifier[0][1][0].in_features == model.classifier[0][1][0].out_features == 1280
    assert numel(model) == total + 1280 * 1280 + 1280 and param_counts(model)[0] == numel(model)
    apply_op(model, op("insert_after", "features.8", layer={"type": "BatchNorm"}), SHAPE)
    assert isinstance(model.features[8][1], nn.BatchNorm2d) and model.features[8][1].num_features == 1280
    apply_op(model, op("insert_after", "avgpool", layer={"type": "Dropout", "p": 0.1}), SHAPE)
    assert modified_modules(model) == {"classifier.0.1", "features.8.1", "avgpool.1"}
    assert dry_run(model, SHAPE).shape == (1, 1000)
    before = structure(model)
    with pytest.raises(SurgeryError, match=r"insert_after 'classifier.0' does not fit the network: "
                                           r"'classifier.1' \(Linear, expects 1280 input features\) "
                                           r"received input \[1, 256\]"):
        apply_op(model, op("insert_after", "classifier.0", layer={"type": "Linear+ReLU", "hidden": 256}), SHAPE)
    with pytest.raises(SurgeryError, match=r"needs a flat \(N, features\) input.*\[1, 320, 2, 2\]"):
        apply_op(model, op("insert_after", "features.7", layer={"type": "Linear"}), SHAPE)
    with pytest.raises(SurgeryError, match=r"'features.1.0.block.0.0' \(Conv2d, expects 32 input "
                                           r"channels\) received input \[1, 8, 32, 32\]"):
        apply_op(model, op("insert_after", "features.0", layer={"type": "Conv2d", "out_channels": 8}), SHAPE)
    assert structure(model) == before


def test_remove_layers() -> None:
    model = meta_model("resnet18")
    block = model.layer4[1]
    apply_op(model, op("remove", "layer4.1"), SHAPE)
    assert isinstance(model.layer4[1], nn.Identity) and modified_modules(model) == {"layer4.1"}
    assert param_counts(model)[1] == 11689512 - numel(block)
    before = structure(model)
    with pytest.raises(SurgeryError, match=r"'fc' \(Linear, expects 512 input features\) received input \[1, 256\]"):
        apply_op(model, op("remove", "layer4.0"), SHAPE)
    with pytest.raises(SurgeryError, match="holds the classification head; use replace_head"):
        apply_op(model, op("remove", "fc"), SHAPE)
    with pytest.raises(SurgeryError, match=r"no module named 'layer4.2'"):
        apply_op(model, op("remove", "layer4.2"), SHAPE)
    assert structure(model) == before


@pytest.mark.parametrize("bad, message", [
    (op("insert_after", "fc", layer={"type": "Dropuot"}), r"unknown layer type 'Dropuot' \(did you mean Dropout"),
    (op("insert_after", "fc", layer={"type": "Dropout", "p": 1.5}), r"'p' must be a probability in \[0, 1\)"),
    (op("insert_after", "fc", layer={"type": "Dropout", "rate": 0.1}), r"Dropout does not take 'rate'"),
    (op("insert_after", "fc"), r"params.layer must be a layer spec"),
    (op("replace", "conv1", layer={"type": "Conv2d", "groups": 5}), r"divisible by groups"),
    (op("replace", "bn1", layer={"type": "BatchNorm2d"}, of_type="ReLU"), r"\"of_type\" only applies"),
    (SurgeryOp("frieze", "fc"), r"unknown surgery op 'frieze' \(did you mean freeze\?\)"),
    ({"op": "freeze", "targte": "fc"}, r"unknown keys \['targte'\]"),
    (op("freeze", "fc", p=1), r"unknown params \['p'\]"),
])
def test_bad_ops_are_clear_errors(bad, message: str) -> None:
    model = meta_model("resnet18")
    before = structure(model)
    with pytest.raises(SurgeryError, match=message):
        apply_op(model, bad, SHAPE)
    assert structure(model) == before


def test_ops_round_trip_through_the_project_file(tmp_path) -> None:
    ops = [op("freeze", "*"), op("unfreeze", "layer4*"), op("replace_head", num_classes=3, hidden=16),
           op("replace", "conv1", layer={"type": "Conv2d", "in_channels": 1}),
           op("insert_after", "layer4.1.relu", layer={"type": "Dropout2d", "p": 0.2}),
           op("replace", "layer3*", layer={"type": "SiLU"}), op("remove", "layer3.1"),
           op("freeze_before", "layer4.0")]
    direct = apply_ops(meta_model("resnet18"), ops, SHAPE)
    project = Project(surgery=ops)
    project.save(tmp_path / "p.tsproj")
    replayed = apply_ops(meta_model("resnet18"), Project.load(tmp_path / "p.tsproj").surgery, SHAPE)
    assert structure(replayed) == structure(direct)
    assert param_counts(replayed) == param_counts(direct)
    # layer3.1's swapped activation went with the block: the record names the removed block only.
    assert modified_modules(replayed) == {"fc", "conv1", "layer4.1.relu.1", "layer3.0.relu", "layer3.1"}


def test_real_weights_stay_and_step_numbering() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    kept = model.layer1[0].conv1.weight.detach().clone()
    apply_ops(model, [op("replace_head", num_classes=4), op("insert_after", "avgpool", layer={"type": "Dropout"})],
              SHAPE)
    assert torch.equal(model.layer1[0].conv1.weight, kept) and model.fc.weight.device.type == "cpu"
    assert not any(m.training for m in model.modules())  # new layers follow the model's eval mode
    assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 4)
    with pytest.raises(SurgeryError, match=r"^surgery step 2 of 2: remove 'layer2.0' does not fit"):
        apply_ops(model, [op("freeze", "*"), op("remove", "layer2.0")], SHAPE)


def test_build_layer_sizes_from_the_incoming_shape() -> None:
    assert isinstance(build_layer({"type": "BatchNorm"}, in_shape=[2, 16]), nn.BatchNorm1d)
    bn = build_layer({"type": "BatchNorm"}, in_shape=[2, 16, 8, 8])
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 16
    seq = build_layer({"type": "Linear+GELU", "hidden": 32, "dropout": 0.1}, in_shape=[2, 16])
    assert [type(m).__name__ for m in seq] == ["Linear", "GELU", "Dropout"] and seq[0].out_features == 32
    conv = build_layer({"type": "Conv2d", "out_channels": 8, "kernel_size": 3}, in_shape=[1, 4, 9, 9])
    assert conv(torch.rand(1, 4, 9, 9)).shape == (1, 8, 9, 9)  # "same" padding by default
    assert isinstance(build_layer({"type": "Identity"}), nn.Identity)
    with pytest.raises(UserError, match="cannot infer its size here"):
        build_layer({"type": "LayerNorm"})
    with pytest.raises(UserError, match=r"BatchNorm2d cannot follow a tensor of shape \[2, 16\]"):
        build_layer({"type": "BatchNorm2d"}, in_shape=[2, 16])
