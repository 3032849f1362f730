"""Benchmark: the model graph's cost beyond constructing the model (target: under 2 s).

Finds the catalog model whose graph has the most nodes, then times separately, in one run on the
same machine: constructing it (random init on the CPU, and shape-only on the meta device) and
building its graph (``model_graph``) for each. A few other families are timed the same way for
context. Prints a table and writes it to docs/benchmarks.md between the ``<!-- bench_inspect -->``
markers (``--no-write`` to print only).

    .venv/bin/python bench/bench_inspect.py [--model NAME] [--repeat 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARK = "<!-- bench_inspect -->"
TARGET_S = 2.0
CONTEXT_MODELS = ("efficientnet_lite0", "resnet50", "vit_b_16", "swin_v2_b", "densenet201")


def timed(fn: Callable[[], Any], repeat: int) -> tuple[tuple[float, float], list[float], Any]:
    """(median wall seconds, median CPU seconds of this process) over ``repeat`` runs, the wall
    times, and the last result. CPU time shows our own work when other jobs share the machine."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return (statistics.median(walls), statistics.median(cpus)), walls, result


def largest_graph(names: list[str]) -> tuple[str, dict[str, int]]:
    """The model with the most graph nodes at its default input size (fx-traced counts first, then
    full graphs for the three largest)."""
    import torch.fx as fx

    from transfer_studio.core import catalog, network
    from transfer_studio.core.graph import _trace, model_graph

    traced: dict[str, int] = {}
    for name in names:
        model = network.build_on_meta(lambda n=name: catalog.build_model(n, "none"))
        graph, _ = _trace(model)
        traced[name] = len(graph.nodes) if isinstance(graph, fx.Graph) else 0
    top = sorted(traced, key=traced.get, reverse=True)[:3]
    counts = {}
    for name in top:
        info = catalog.get_info(name)
        model = network.build_on_meta(lambda n=name: catalog.build_model(n, "none"))
        counts[name] = len(model_graph(model, (1, 3, info.input_size, info.input_size), name).nodes)
    return max(counts, key=counts.get), counts


def measure(name: str, repeat: int, cpu: bool) -> dict[str, Any]:
    from transfer_studio.core import catalog, network
    from transfer_studio.core.graph import model_graph

    info = catalog.get_info(name)
    shape = (1, 3, info.input_size, info.input_size)
    row: dict[str, Any] = {"name": name, "input": info.input_size}
    meta_build, row["meta_build_runs"], meta_model = timed(
        lambda: network.build_on_meta(lambda: catalog.build_model(name, "none")), repeat)
    meta_graph, row["meta_graph_runs"], graph = timed(lambda: model_graph(meta_model, shape, name), repeat)
    row.update(meta_build=meta_build, meta_graph=meta_graph, nodes=len(graph.nodes), edges=len(graph.edges),
               method=graph.method)
    if cpu:
        cpu_build, row["cpu_build_runs"], cpu_model = timed(lambda: catalog.build_model(name, "none"), repeat)
        cpu_graph, row["cpu_graph_runs"], _ = timed(lambda: model_graph(cpu_model, shape, name), repeat)
        row.update(cpu_build=cpu_build, cpu_graph=cpu_graph)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="time this model instead of searching for the largest graph")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from transfer_studio.core import catalog

    t0 = time.perf_counter()
    if args.model:
        biggest, counts = catalog.get_info(args.model).name, {}
    else:
        biggest, counts = largest_graph(catalog.model_names())
    search_s = time.perf_counter() - t0
    main_row = measure(biggest, args.repeat, cpu=True)
    rows = [main_row] + [measure(n, args.repeat, cpu=False) for n in CONTEXT_MODELS if n != biggest]

    lines = ["## Model graph (bench/bench_inspect.py)", ""]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines.append(f"{platform.machine()} with {os.cpu_count()} cores, load average {load:.1f} at the end of the "
                 f"run; median of {args.repeat} runs each, default input size of each model.")
    lines.append("")
    if counts:
        sizes = ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines.append(f"Most graph nodes in the catalog: **{biggest}** ({sizes} nodes; search {search_s:.0f} s).")
        lines.append("")
    r = main_row
    lines += [
        f"| {biggest} ({r['nodes']} nodes, {r['edges']} edges, {r['method']}) | wall s | CPU s |",
        "|---|---:|---:|",
        f"| construct, random init on the CPU | {r['cpu_build'][0]:.2f} | {r['cpu_build'][1]:.2f} |",
        f"| graph of that model (meta stand-ins for its weights) | {r['cpu_graph'][0]:.2f} | {r['cpu_graph'][1]:.2f} |",
        f"| construct on the meta device (`inspect`'s default) | {r['meta_build'][0]:.2f} | {r['meta_build'][1]:.2f} |",
        f"| graph of the meta model | {r['meta_graph'][0]:.2f} | {r['meta_graph'][1]:.2f} |",
        "",
    ]
    wall = max(r["cpu_graph"][0], r["meta_graph"][0])
    cpu = max(r["cpu_graph"][1], r["meta_graph"][1])
    ratio = r["cpu_graph"][0] / r["cpu_build"][0]
    verdict = "met" if wall < TARGET_S else ("met in CPU time; the wall time includes waiting for the other "
                                             "jobs on this shared machine" if cpu < TARGET_S else "NOT met")
    lines.append(f"Cost beyond construction: {wall:.2f} s wall, {cpu:.2f} s CPU at most (graph / CPU "
                 f"construction, wall: {ratio:.2f}). Target under {TARGET_S:.0f} s: {verdict}.")
    lines += ["", "Other families (meta construction, then the graph; wall / CPU seconds):", "",
              "| model | input | nodes | construct (meta) | graph |", "|---|---:|---:|---:|---:|"]
    for row in rows[1:]:
        lines.append(f"| {row['name']} | {row['input']} | {row['nodes']} | {row['meta_build'][0]:.2f} / "
                     f"{row['meta_build'][1]:.2f} | {row['meta_graph'][0]:.2f} / {row['meta_graph'][1]:.2f} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(MARK, text)
        print("\nwritten to docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
