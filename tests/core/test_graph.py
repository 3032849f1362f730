"""core.graph: the model graph as data, on every catalog model (built on the meta device: fast)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from torch import nn

from transfer_studio.core import catalog, network
from transfer_studio.core.graph import (
    HEAD_ID,
    STEM_ID,
    graph_to_dict,
    model_graph,
)
from transfer_studio.core.surgery import find_head, ordered_blocks
from transfer_studio.errors import UserError


def meta_model(name: str) -> nn.Module:
    return network.build_on_meta(lambda: catalog.build_model(name, "none"))


def small_size(info: catalog.ModelInfo) -> int:
    """The smallest input the model takes (fixed-size transformers: their only size), at least 32."""
    return max(info.min_size, 32)


def check_consistent(graph, model: nn.Module) -> None:
    ids = [n.id for n in graph.nodes]
    assert len(ids) == len(set(ids)), "node ids are unique"
    known = set(ids)
    assert all(s in known and d in known for s, d in graph.edges)
    blocks = {b.id: b for b in graph.blocks}
    assert all(n.block is None or n.block in blocks for n in graph.nodes)
    assert all(b.parent is None or b.parent in blocks for b in graph.blocks)
    # Every parameter of the network appears exactly once: on a module node or a parameter node.
    assert sum(n.params for n in graph.nodes) == graph.total_params == sum(p.numel() for p in model.parameters())
    # Data flows from the input to the output.
    preds: dict[str, list[str]] = {}
    for s, d in graph.edges:
        preds.setdefault(d, []).append(s)
    seen, todo = set(), ["output"]
    while todo:
        cur = todo.pop()
        if cur not in seen:
            seen.add(cur)
            todo.extend(preds.get(cur, []))
    assert "input" in seen


@pytest.mark.parametrize("name", catalog.model_names())
def test_every_catalog_model(name: str) -> None:
    info = catalog.get_info(name)
    model = meta_model(name)
    size = small_size(info)
    graph = model_graph(model, (1, 3, size, size), name)
    assert graph.method == "fx"
    assert graph.model_name == name and graph.input_shape == [1, 3, size, size]
    assert graph.nodes[0].kind == "input" and graph.nodes[-1].kind == "output"
    assert graph.nodes[-1].output_shape == [1, info.num_classes]
    if name not in ("googlenet", "inception_v3"):  # the catalog builds these without auxiliary heads
        assert graph.total_params == info.params
    check_consistent(graph, model)
    # The head is found, it is a node of the graph, and it sits in a head block.
    head = find_head(model)
    node = next(n for n in graph.nodes if n.id == head)
    assert node.type in ("Linear", "Conv2d") and node.params > 0
    blocks = {b.id: b for b in graph.blocks}
    chain, cur = [], node.block
    while cur is not None:
        chain.append(blocks[cur].kind)
        cur = blocks[cur].parent
    assert "head" in chain, f"{head} is not inside a head block: {chain}"
    # Freeze units: in forward order, starting with a parameterised layer, ending with the head.
    units = ordered_blocks(model)
    assert units and (units[-1] == head or head.startswith(units[-1] + "."))


def test_resnet18_residual_adds_have_two_inputs() -> None:
    model = meta_model("resnet18")
    graph = model_graph(model, (1, 3, 64, 64), "resnet18")
    inputs: dict[str, list[str]] = {}
    for s, d in graph.edges:
        inputs.setdefault(d, []).append(s)
    adds = [n for n in graph.nodes if n.type == "add"]
    assert len(adds) == 8  # one per BasicBlock
    first = adds[0]
    assert sorted(inputs[first.id]) == ["layer1.0.bn2", "maxpool"]  # the residual and the identity path
    assert first.block == "layer1.0" and first.output_shape == [1, 64, 16, 16]
    # The block's ReLU runs twice: two nodes, parameters counted once.
    assert {"layer1.0.relu", "layer1.0.relu@1"} <= {n.id for n in graph.nodes}
    # Structure: synthetic stem and head, four stages of blocks.
    kinds = {b.id: b.kind for b in graph.blocks}
    assert kinds[STEM_ID] == "stem" and kinds[HEAD_ID] == "head"
    assert [b for b, k in kinds.items() if k == "stage"] == ["layer1", "layer2", "layer3", "layer4"]
    assert kinds["layer1.0"] == "block" and kinds["layer2.0.downsample"] == "other"
    by_id = {n.id: n for n in graph.nodes}
    assert [by_id[i].block for i in ("conv1", "bn1", "relu", "maxpool")] == [STEM_ID] * 4
    assert [by_id[i].block for i in ("avgpool", "flatten", "fc")] == [HEAD_ID] * 3
    assert by_id["conv1"].output_shape == [1, 64, 32, 32] and by_id["conv1"].params == 9408
    assert ordered_blocks(model) == ["conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1",
                                     "layer3.0", "layer3.1", "layer4.0", "layer4.1", "fc"]


def test_densenet_concatenations_and_vit_tokens() -> None:
    graph = model_graph(meta_model("densenet121"), (1, 3, 32, 32))
    fan_in = Counter(d for _, d in graph.edges)
    cats = [n for n in graph.nodes if n.type == "cat"]
    assert cats and max(fan_in[c.id] for c in cats) >= 6  # a dense layer sees all earlier outputs
    vit = meta_model("vit_b_16")
    graph = model_graph(vit, (1, 3, 224, 224))
    by_id = {n.id: n for n in graph.nodes}
    # The class token (a parameter of the model itself) is concatenated with the 196 patch tokens.
    assert by_id["class_token"].type == "parameter" and by_id["class_token"].params == 768
    fan_in = Counter(d for _, d in graph.edges)
    cat = next(n for n in graph.nodes if n.type == "cat")
    assert cat.output_shape == [1, 197, 768] and fan_in[cat.id] == 2
    assert by_id["conv_proj"].block == STEM_ID
    assert ordered_blocks(vit)[:2] == ["conv_proj", "encoder.layers.encoder_layer_0"]


def test_lite0_blocks_and_real_weights_untouched() -> None:
    model = catalog.build_model("efficientnet_lite0")  # the bundled pretrained weights, on the CPU
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    graph = model_graph(model, (1, 3, 224, 224), "efficientnet_lite0")
    # Shapes were computed on meta stand-ins: the real weights and the training flag are as they were.
    after = model.state_dict()
    assert all(after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items())
    assert model.training and all(m.training for m in model.modules())
    kinds = {b.id: b.kind for b in graph.blocks}
    assert kinds["_blocks"] == "stage" and kinds[STEM_ID] == "stem" and kinds[HEAD_ID] == "head"
    units = ordered_blocks(model)
    assert units[:3] == ["_conv_stem", "_bn0", "_blocks.0"] and units[-3:] == ["_conv_head", "_bn1", "_fc"]
    assert len([u for u in units if u.startswith("_blocks.")]) == 16
    by_id = {n.id: n for n in graph.nodes}
    assert by_id["_conv_head"].output_shape == [1, 1280, 7, 7] and by_id["_fc"].block == HEAD_ID
    check_consistent(graph, model)
    assert json.loads(json.dumps(graph_to_dict(graph)))["nodes"][1]["id"] == "_stem_pad"


class _DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gate = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.sum() > 0:  # meta tensors have no values either: the hooks fallback must avoid it too
            x = x + 1
        return self.gate(x)


class _Net(nn.Module):
    def __init__(self, inner: nn.Module, root_branch: bool = False) -> None:
        super().__init__()
        self.body = inner
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        self.root_branch = root_branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        if self.root_branch and x.dim() == 4 and bool(x.shape[1] == 4):
            x = x * 1
        return self.fc(torch.flatten(self.pool(x), 1))


class _ShapeBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.shape[-1] > 4:  # fine for a real forward, untraceable for fx (Proxy in a condition)
            x = x.relu()
        return x


def test_untraceable_submodule_becomes_one_node() -> None:
    graph = model_graph(_Net(_ShapeBranch()), (1, 3, 16, 16))
    assert graph.method == "fx"
    by_id = {n.id: n for n in graph.nodes}
    assert by_id["body"].type == "_ShapeBranch" and by_id["body"].output_shape == [1, 4, 14, 14]
    assert by_id["body"].params == 3 * 4 * 9 + 4  # the opaque node carries its sub-modules' parameters
    assert ("input", "body") in graph.edges and by_id["output"].output_shape == [1, 2]
    assert "body" not in {b.id for b in graph.blocks} and by_id["body"].block is None


def test_hooks_fallback_when_the_top_level_forward_cannot_be_traced() -> None:
    graph = model_graph(_Net(_ShapeBranch(), root_branch=True), (1, 3, 16, 16), "net")
    assert graph.method == "hooks"
    assert [n.id for n in graph.nodes] == ["input", "body.conv", "pool", "fc", "output"]
    assert graph.edges == [("input", "body.conv"), ("body.conv", "pool"), ("pool", "fc"), ("fc", "output")]
    assert graph.nodes[1].output_shape == [1, 4, 14, 14] and graph.nodes[-1].output_shape == [1, 2]
    assert graph.nodes[1].block == "body"
    check_consistent(graph, _Net(_ShapeBranch(), root_branch=True))


def test_value_dependent_model_and_wrong_input_size_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"does not accept input \[1, 3, 16, 16\]"):
        model_graph(_Net(_DataDependent()), (1, 3, 16, 16), "gated")
    with pytest.raises(UserError, match=r"vit_b_16 does not accept input \[1, 3, 64, 64\].*Wrong image height"):
        model_graph(meta_model("vit_b_16"), (1, 3, 64, 64), "vit_b_16")
    with pytest.raises(UserError, match=r"'conv1' \(Conv2d, expects 3 input channels\) received input \[1, 1, 32, 32\]"):
        model_graph(meta_model("resnet18"), (1, 1, 32, 32), "resnet18")


def test_tracing_does_not_disturb_a_model_running_on_another_thread():
    """fx patches nn.Module.__call__ process-wide while tracing; training on another thread must not
    be traced by mistake (it failed with 'module is not installed as a submodule')."""
    import threading

    import torchvision

    from transfer_studio.core.graph import model_graph

    worker_model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = worker_model(x)
    stop, errors, runs = threading.Event(), [], [0]

    def run_forever():
        try:
            with torch.no_grad():
                while not stop.is_set():
                    assert torch.equal(worker_model(x), expected)
                    runs[0] += 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=run_forever)
    thread.start()
    try:
        for _ in range(3):
            graph = model_graph(torchvision.models.resnet50(), (1, 3, 64, 64), name="resnet50")
            assert graph.method == "fx"
    finally:
        stop.set()
        thread.join(30)
    assert errors == [] and runs[0] > 0
