"""`transfer-studio inspect MODEL`: the network as a graph — layers, shapes, parameters, blocks, data flow."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "inspect"
HELP = "Show a model's layers, output shapes, parameters, blocks and data flow (JSON: the full graph)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a catalog model name (see `transfer-studio models`)")
    parser.add_argument("--weights", default="none", metavar="DEFAULT|none|PATH",
                        help="none (default: the graph does not depend on the weights, and the model is then "
                             "built without allocating them), DEFAULT (pretrained) or a state-dict file to check")
    parser.add_argument("--allow-download", action="store_true",
                        help="with --weights DEFAULT: download missing pretrained weights")
    parser.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="input size in pixels for the shapes (default: the model's own input size)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transfer_studio.config import ModelSpec, Project
    from transfer_studio.core import catalog, network
    from transfer_studio.core.graph import graph_to_dict, model_graph
    from transfer_studio.core.surgery import find_head, ordered_blocks
    from transfer_studio.errors import UserError

    info = catalog.get_info(args.model)
    project = Project(model=ModelSpec(name=info.name, weights=args.weights))
    if args.image_size is not None:
        if args.image_size < 1:
            raise UserError(f"--image-size must be a positive number of pixels, got {args.image_size}")
        project.train.image_size = args.image_size
    shape = network.input_shape(project)  # validates the size against the model
    if catalog.weights_choice(args.weights) == "none":
        model = network.build_network_meta(project)
    else:
        model = network.build_network(project, allow_download=args.allow_download)
    graph = model_graph(model, shape, info.name)
    result = graph_to_dict(graph)
    result["head"] = find_head(model)
    result["freeze_units"] = ordered_blocks(model)
    return result


# -- human-readable output ----------------------------------------------------------------------------------
def _params(n: int, trainable: int) -> str:
    if n == 0:
        return ""
    note = "" if trainable == n else " frozen" if trainable == 0 else f" ({trainable:,} trainable)"
    return f"{n:,}{note}"


def _shape(shape: list[int] | None) -> str:
    return "" if shape is None else "[" + ", ".join(str(s) for s in shape) + "]"


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    blocks = {b["id"]: b for b in result["blocks"]}
    inputs: dict[str, list[str]] = {}
    for src, dst in result["edges"]:
        inputs.setdefault(dst, []).append(src)

    def chain(block_id: str | None) -> list[str]:
        out: list[str] = []
        while block_id is not None and block_id in blocks and block_id not in out:
            out.append(block_id)
            block_id = blocks[block_id]["parent"]
        return out[::-1]

    method = "torch.fx data flow" if result["method"] == "fx" else "forward hooks (execution order)"
    lines = [
        f"{result['model_name']}: input {_shape(result['input_shape'])}, {result['total_params']:,} parameters "
        f"({result['trainable_params']:,} trainable)",
        f"graph from {method}: {len(result['nodes'])} nodes, {len(result['edges'])} edges, "
        f"{len(result['blocks'])} blocks; head: {result['head']}",
        "",
    ]
    open_chain: list[str] = []
    for node in result["nodes"]:
        current = chain(node["block"])
        common = 0
        while common < min(len(current), len(open_chain)) and current[common] == open_chain[common]:
            common += 1
        for depth in range(common, len(current)):
            b = blocks[current[depth]]
            kind = b["kind"] if b["label"].lower() == b["kind"] else f"{b['kind']}, {b['label']}"
            label = f"{b['id']}  ({kind})"
            lines.append("  " * depth + f"{label:<60} {_params(b['params'], b['trainable_params'])}".rstrip())
        open_chain = current
        indent = "  " * len(current)
        srcs = inputs.get(node["id"], [])
        flow = f"  <- {', '.join(srcs)}" if len(srcs) > 1 else ""
        name = f"{indent}{node['id']}"
        lines.append(f"{name:<44} {node['type']:<22} {_shape(node['output_shape']):<20} "
                     f"{_params(node['params'], node['trainable_params'])}{flow}".rstrip())
    return "\n".join(lines)
