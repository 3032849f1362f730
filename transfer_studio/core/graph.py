"""A network's structure as plain data: nodes, data-flow edges, block hierarchy, shapes and parameters.

Shapes come from meta tensors, never a real forward: a model built on the meta device is used as is;
a model holding real weights gets its parameters and buffers swapped for meta stand-ins while the
shapes are computed (``meta_shadow``), which costs no memory and no arithmetic.

Edges are the real data flow when ``torch.fx`` can trace the model (residual adds and concatenations
have several inputs). A module whose own forward cannot be traced (data-dependent control flow)
becomes an opaque node and the trace is retried; when even the top-level forward cannot be traced the
graph falls back to forward hooks: leaf modules in execution order, chained.

The structural helpers here (leaf modules, stages, freeze units, head location) are shared with
``core.surgery``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from transfer_studio.errors import UserError

__all__ = [
    "GraphBlock",
    "GraphNode",
    "ModelGraph",
    "ShapeError",
    "dry_run",
    "find_head",
    "graph_to_dict",
    "head_slot",
    "is_leaf_module",
    "meta_shadow",
    "model_graph",
    "ordered_blocks",
]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Attributes where classifiers keep their final layer, most specific first.
_HEAD_ATTRS = ("fc", "_fc", "classifier", "heads", "head", "last_linear")
# Auxiliary classifiers (GoogLeNet, Inception v3): only used in training mode, not freeze units.
AUX_HEADS = ("aux1", "aux2", "AuxLogits")
# Attribute on a model where surgery records the head it installed (see core.surgery).
HEAD_SLOT_ATTR = "_ts_head_slot"
STEM_ID = "[stem]"
HEAD_ID = "[head]"


# -- data ---------------------------------------------------------------------------------------------
@dataclass
class GraphNode:
    id: str  # qualified module name ("layer1.0.conv1", repeated calls "layer1.0.relu@1"); ops: "add", ...
    type: str  # class name ("Conv2d") or op ("add", "cat", "flatten")
    kind: str  # "module" | "op" | "input" | "output"
    output_shape: list[int] | None
    params: int  # own parameters (a leaf module's recursive count; counted on its first call only)
    trainable_params: int
    block: str | None  # id of the innermost GraphBlock holding it


@dataclass
class GraphBlock:
    id: str  # qualified module name of the container; synthetic groups: "[stem]", "[head]"
    kind: str  # "stem" | "stage" | "block" | "head" | "other"
    label: str
    parent: str | None
    params: int
    trainable_params: int


@dataclass
class ModelGraph:
    model_name: str
    input_shape: list[int]
    method: str  # "fx" | "hooks"
    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    blocks: list[GraphBlock] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0


def graph_to_dict(graph: ModelGraph) -> dict[str, Any]:
    """Plain JSON-able dict (edges as [src, dst] lists)."""
    data = dataclasses.asdict(graph)
    data["edges"] = [list(e) for e in graph.edges]
    return data


class ShapeError(Exception):
    """A dry forward on meta tensors failed; ``module`` is the innermost module that raised."""

    def __init__(self, message: str, module: str | None, module_type: str | None,
                 input_shapes: list[list[int]] | None) -> None:
        super().__init__(message)
        self.message = message
        self.module = module
        self.module_type = module_type
        self.input_shapes = input_shapes

    def describe(self) -> str:
        where = ""
        if self.module is not None:
            name = self.module or "the model's own forward"
            shapes = ", ".join(str(s) for s in self.input_shapes or []) or "no tensor"
            where = f"'{name}' ({self.module_type}) received input {shapes}: "
        return where + _one_line(self.message)


# -- structural helpers ---------------------------------------------------------------------------------
def is_leaf_module(module: nn.Module) -> bool:
    """A module shown as one node: no children, or a torch.nn layer (MultiheadAttention, Conv subclasses)."""
    if next(module.children(), None) is None:
        return True
    if isinstance(module, _CONTAINERS):
        return False
    return type(module).__module__.startswith("torch.nn.") or isinstance(
        module, (_ConvNd, nn.Linear, _NormBase, nn.LayerNorm, nn.GroupNorm)
    )


def _is_layer_group(module: nn.Module) -> bool:
    """A Sequential of plain layers (Conv2dNormActivation, BasicConv2d-like runs): not a block."""
    return isinstance(module, nn.Sequential) and all(is_leaf_module(c) for c in module.children())


def _is_stage(module: nn.Module) -> bool:
    """A run of repeated blocks: a container (or *Stage class) whose children all share one block class."""
    if is_leaf_module(module):
        return False
    if not (isinstance(module, _CONTAINERS) or "stage" in type(module).__name__.lower()):
        return False
    kids = list(module.children())
    first = type(kids[0])
    return all(type(k) is first and not is_leaf_module(k) and not _is_layer_group(k) for k in kids)


def _count(params: Iterator[nn.Parameter], seen: set[int] | None = None) -> tuple[int, int]:
    total = trainable = 0
    for p in params:
        if seen is not None:
            if id(p) in seen:
                continue
            seen.add(id(p))
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable


def _subtree_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Qualified module name -> (params, trainable) of its whole subtree, in one bottom-up pass."""
    out: dict[str, tuple[int, int]] = {}

    def visit(m: nn.Module, name: str) -> tuple[int, int]:
        total, trainable = _count(p for p in m._parameters.values() if p is not None)
        for child_name, child in m._modules.items():
            if child is None:
                continue
            ct, ctr = visit(child, f"{name}.{child_name}" if name else child_name)
            total += ct
            trainable += ctr
        out[name] = (total, trainable)
        return total, trainable

    visit(model, "")
    return out


def _units_and_stages(model: nn.Module) -> tuple[list[str], set[str], set[str]]:
    """Freeze units in forward order, the stage containers, and the units that are blocks of a stage."""
    counts = _subtree_counts(model)
    total = counts[""][0]
    units: list[str] = []
    stages: set[str] = set()
    stage_members: set[str] = set()
    contains_stage_memo: dict[int, bool] = {}

    def contains_stage(m: nn.Module) -> bool:
        key = id(m)
        if key not in contains_stage_memo:
            contains_stage_memo[key] = any(_is_stage(c) or contains_stage(c) for c in m.children())
        return contains_stage_memo[key]

    def visit(m: nn.Module, prefix: str, parent_is_stage: bool) -> None:
        for name, child in m.named_children():
            qname = f"{prefix}{name}"
            if not prefix and name in AUX_HEADS:
                continue
            if counts[qname][0] == 0:
                continue
            if is_leaf_module(child):
                units.append(qname)
            elif _is_stage(child):
                stages.add(qname)
                visit(child, qname + ".", True)
            elif type(child) in _CONTAINERS or (
                contains_stage(child) and (parent_is_stage or counts[qname][0] > 0.5 * total)
            ):
                # Plain containers are not units of their own; nor is a backbone wrapper (ViT's encoder).
                visit(child, qname + ".", False)
            else:
                units.append(qname)
                if parent_is_stage:
                    stage_members.add(qname)

    visit(model, "", False)
    return units, stages, stage_members


def ordered_blocks(model: nn.Module) -> list[str]:
    """Freeze units in forward order: stem layers, every block of every stage, ..., the head.

    Units are modules holding parameters: leaf layers at the top level (resnet's conv1, bn1, fc), the
    blocks of each stage (layer1.0, features.2.1, encoder.layers.encoder_layer_0, _blocks.3) and
    self-contained modules (features.0, inception3a). Auxiliary heads are not units.
    """
    return _units_and_stages(model)[0]


def _last_classifier_in(module: nn.Module, prefix: str) -> str | None:
    last_linear = last_conv = None
    for name, m in module.named_modules(prefix=prefix):
        if isinstance(m, nn.Linear):
            last_linear = name
        elif isinstance(m, nn.Conv2d):
            last_conv = name
    return last_linear or last_conv


def _recorded_slot(model: nn.Module) -> str | None:
    slot = model.__dict__.get(HEAD_SLOT_ATTR)
    if slot and _get_module(model, slot) is not None:
        return slot
    return None


def find_head(model: nn.Module) -> str:
    """Qualified name of the final classifier layer (a Linear; squeezenet's is a 1x1 Conv2d)."""
    slot = _recorded_slot(model)
    if slot is not None:
        found = _last_classifier_in(_get_module(model, slot), slot)
        if found:
            return found
    children = dict(model.named_children())
    for attr in _HEAD_ATTRS:
        child = children.get(attr)
        if child is None:
            continue
        if isinstance(child, (nn.Linear, nn.Conv2d)):
            return attr
        found = _last_classifier_in(child, attr)
        if found:
            return found
    # Unknown family: the last Linear registered outside the auxiliary heads.
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name.split(".")[0] not in AUX_HEADS:
            last = name
    if last is None:
        raise UserError(f"cannot find the classification head of {type(model).__name__}: it has no Linear layer")
    return last


def head_slot(model: nn.Module) -> str:
    """The module that head replacement swaps: the head surgery installed, else ``find_head``."""
    return _recorded_slot(model) or find_head(model)


def _get_module(model: nn.Module, name: str) -> nn.Module | None:
    if name == "":
        return model
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


# -- meta execution -------------------------------------------------------------------------------------
@contextlib.contextmanager
def meta_shadow(model: nn.Module) -> Iterator[None]:
    """Temporarily replace every non-meta parameter and buffer by a meta tensor of the same shape.

    The real tensors are put back on exit, whatever happens. Free for a model already on meta.
    """
    saved: list[tuple[dict[str, Any], str, torch.Tensor]] = []
    try:
        for m in model.modules():
            for store in (m._parameters, m._buffers):
                for key, t in store.items():
                    if t is None or t.device.type == "meta":
                        continue
                    meta = torch.empty_like(t, device="meta")
                    if isinstance(t, nn.Parameter):
                        meta = nn.Parameter(meta, requires_grad=t.requires_grad)
                    saved.append((store, key, t))
                    store[key] = meta
        yield
    finally:
        for store, key, t in reversed(saved):
            store[key] = t


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """model.eval() for the duration, then every module's own training flag restored."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _input_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _shapes(values: Any) -> list[list[int]]:
    if isinstance(values, torch.Tensor):
        return [list(values.shape)]
    if isinstance(values, (list, tuple)):
        return [s for v in values for s in _shapes(v)]
    if isinstance(values, dict):
        return [s for v in values.values() for s in _shapes(v)]
    return []


def dry_run(model: nn.Module, input_shape: Sequence[int]) -> Any:
    """Forward a meta tensor through the model in eval mode; ShapeError names the module that failed."""
    shape = tuple(int(s) for s in input_shape)
    with eval_mode(model), meta_shadow(model), _fast_leaves(model), torch.no_grad():
        x = torch.empty(shape, device="meta", dtype=_input_dtype(model))
        try:
            return model(x)
        except Exception as first:  # noqa: BLE001 - rerun with hooks to say where it broke
            raise _locate_failure(model, x, first) from first


@contextlib.contextmanager
def _fast_leaves(model: nn.Module) -> Iterator[None]:
    """Leaf layers answer repeated meta calls from a memo and skip shape-preserving kernels.

    The same shortcuts as the graph's interpreter (see ``_ShapeInterpreter``), for a plain forward:
    each leaf's ``forward`` is wrapped for the duration (module hooks still run around it).
    """
    memo: dict[Any, Any] = {}
    keys: dict[int, Any] = {}
    patched: list[nn.Module] = []

    def wrap(module: nn.Module) -> Any:
        original = module.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            if len(args) == 1 and not kwargs and _keeps_shape(module, args[0]):
                x = args[0]
                return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
            try:
                key = (_module_key(module, keys), _arg_key((args, kwargs)))
                hash(key)
            except (_NotMemoizable, TypeError):
                return original(*args, **kwargs)
            if key in memo:
                return _rebuild(memo[key])
            out = original(*args, **kwargs)
            frozen = _freeze(out)
            if frozen is not None:
                memo[key] = frozen
            return out

        return forward

    seen: set[int] = set()
    try:
        for m in model.modules():
            if m is model or id(m) in seen or "forward" in m.__dict__ or not is_leaf_module(m):
                continue
            seen.add(id(m))
            m.forward = wrap(m)  # type: ignore[method-assign]
            patched.append(m)
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


def _locate_failure(model: nn.Module, x: torch.Tensor, exc: Exception) -> ShapeError:
    stack: list[tuple[str, nn.Module, list[list[int]]]] = []
    handles = []

    def pre(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            stack.append((name, module, _shapes(args)))
        return hook

    def post(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    for name, m in model.named_modules():
        handles.append(m.register_forward_pre_hook(pre(name)))
        handles.append(m.register_forward_hook(post))
    try:
        model(x)
    except Exception as again:  # noqa: BLE001
        exc = again
    finally:
        for h in handles:
            h.remove()
    if not stack:
        return ShapeError(str(exc), None, None, None)
    name, module, shapes = stack[-1]
    return ShapeError(str(exc), name, type(module).__name__ + _expects(module), shapes)


def _expects(module: nn.Module) -> str:
    """What a layer takes, for error messages ("Conv2d, expects 32 input channels")."""
    if isinstance(module, _ConvNd):
        return f", expects {module.in_channels} input channels"
    if isinstance(module, nn.Linear):
        return f", expects {module.in_features} input features"
    if isinstance(module, _NormBase):
        return f", expects {module.num_features} channels"
    if isinstance(module, nn.LayerNorm):
        return f", expects last dimensions {list(module.normalized_shape)}"
    return ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- fx tracing -----------------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    """Leaf modules are opaque nodes; remembers which module's forward was being traced when it failed.

    While tracing, fx patches ``nn.Module.__call__`` and ``__getattr__`` for the whole process. A model
    running on another thread at that moment (training, evaluation, a preview) would be traced by
    mistake and break, so calls from any other thread pass straight through to the real module.
    """

    def __init__(self, opaque: set[str]) -> None:
        super().__init__()
        self.opaque = opaque
        self._owner = threading.get_ident()
        self.tracing: list[str] = []
        self._tensor_names: dict[int, str] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.opaque or is_leaf_module(m)

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if threading.get_ident() != self._owner:
            return forward(*args, **kwargs)
        name = self.path_of_module(m)
        if self.is_leaf_module(m, name):
            return super().call_module(m, forward, args, kwargs)
        self.tracing.append(name)
        result = super().call_module(m, forward, args, kwargs)
        self.tracing.pop()
        return result

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        # fx's default scans every parameter of the model for each attribute access (quadratic on
        # big transformers); a dict from tensor identity to qualified name does the same in O(1).
        if not isinstance(attr_val, torch.Tensor) or threading.get_ident() != self._owner:
            return attr_val
        if self._tensor_names is None:
            names = {id(t): n for n, t in self.root.named_buffers()}
            names.update({id(p): n for n, p in self.root.named_parameters()})
            self._tensor_names = names
        name = self._tensor_names.get(id(attr_val))
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]


def _trace(model: nn.Module) -> tuple[fx.Graph | None, set[str]]:
    """fx graph of the model and the sub-modules made opaque because their own forward cannot be
    traced; (None, ...) when the top level fails."""
    opaque: set[str] = set()
    while True:
        tracer = _Tracer(opaque)
        try:
            return tracer.trace(model), opaque
        except Exception:  # noqa: BLE001 - any trace failure: make that module opaque and retry
            culprit = tracer.tracing[-1] if tracer.tracing else ""
            if not culprit or culprit in opaque:
                return None, opaque
            opaque.add(culprit)


_MEMO_SCALARS = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format,
                 torch.layout, slice, type(Ellipsis))


class _ShapeInterpreter(fx.Interpreter):
    """Runs the graph on meta tensors, reusing results for repeated (op, input metadata) pairs.

    Meta kernels are mostly Python decompositions (~0.3-2 ms per op), and deep networks repeat the
    same block with the same shapes dozens of times: on meta an op's result depends only on its
    inputs' metadata and its non-tensor arguments, so a repeated call is answered from the memo.
    """

    def __init__(self, model: nn.Module, graph: fx.Graph) -> None:
        super().__init__(model, garbage_collect_values=True, graph=graph)
        self.values: dict[fx.Node, Any] = {}
        self._memo: dict[Any, Any] = {}
        self._module_keys: dict[int, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        key = None
        if n.op in ("call_function", "call_method", "call_module"):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            key = self._key(n, args, kwargs)
            if key is not None and key in self._memo:
                result = _rebuild(self._memo[key])
                self.values[n] = _describe_value(result)
                return result
        result = super().run_node(n)
        if key is not None:
            frozen = _freeze(result)
            if frozen is not None:
                self._memo[key] = frozen
        self.values[n] = _describe_value(result)
        return result

    def call_module(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        module = self.fetch_attr(str(target))
        if len(args) == 1 and not kwargs and _keeps_shape(module, args[0]):
            x = args[0]
            return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
        return super().call_module(target, args, kwargs)

    def _key(self, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            arg_key = _arg_key((args, kwargs))
        except _NotMemoizable:
            return None
        if n.op == "call_module":
            target: Any = _module_key(self.fetch_attr(str(n.target)), self._module_keys)
        else:
            target = n.target
        key = (n.op, target, arg_key)
        try:
            hash(key)
        except TypeError:
            return None
        return key


def _module_key(module: nn.Module, cache: dict[int, Any]) -> Any:
    """A leaf module's identity for shape purposes: class, tensor shapes, plain configuration values."""
    cached = cache.get(id(module))
    if cached is None:
        composite = next(module.children(), None) is not None
        if composite and not type(module).__module__.startswith("torch.nn."):
            cached = ("unique", id(module))  # an opaque custom module: its forward may use anything
        else:
            config = []
            for k, v in sorted(module.__dict__.items()):
                if k.startswith("_") or k == "forward":  # forward: our own memo wrapper
                    continue
                if isinstance(v, _MEMO_SCALARS) or (isinstance(v, tuple) and all(
                        isinstance(x, _MEMO_SCALARS) for x in v)):
                    config.append((k, v))
                else:
                    config.append((k, "?", id(v)))  # unknown state: only equal to itself
            tensors = tuple((k, tuple(t.shape), t.dtype) for k, t in
                            list(module._parameters.items()) + list(module._buffers.items())
                            if t is not None)
            children = tuple((name, _module_key(c, cache)) for name, c in module.named_children())
            cached = (type(module), tuple(config), tensors, children)
        cache[id(module)] = cached
    return cached


# Layers whose output has the input's shape, so their (comparatively slow) meta kernels can be skipped.
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
                nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                nn.AlphaDropout)


def _keeps_shape(module: nn.Module, x: Any) -> bool:
    if not isinstance(x, torch.Tensor) or x.device.type != "meta" or not x.is_floating_point():
        return False
    if type(module) in _ELEMENTWISE:
        return True
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        try:
            module._check_input_dim(x)
        except ValueError:
            return False  # let the real kernel raise its own message
        return x.shape[1] == module.num_features and not module.training
    return False


class _NotMemoizable(Exception):
    pass


def _arg_key(value: Any) -> Any:
    """Hashable description of call arguments: tensor metadata and plain values, structure kept."""
    if isinstance(value, torch.Tensor):
        if value.device.type != "meta":
            raise _NotMemoizable
        return (tuple(value.shape), value.stride(), value.dtype)
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_arg_key(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((k, _arg_key(v)) for k, v in value.items()))
    if isinstance(value, slice):
        return (slice, value.start, value.stop, value.step)
    if isinstance(value, _MEMO_SCALARS):
        return (type(value), value)
    raise _NotMemoizable


def _freeze(value: Any) -> Any:
    """Metadata of a meta-tensor result, or None if it holds anything that cannot be rebuilt."""
    leaves, spec = pytree.tree_flatten(value)
    out = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            if leaf.device.type != "meta" or isinstance(leaf, nn.Parameter):
                return None
            out.append(("t", tuple(leaf.shape), leaf.stride(), leaf.dtype))
        elif isinstance(leaf, (_MEMO_SCALARS, torch.Size)):
            out.append(("v", leaf))
        else:
            return None
    return out, spec


def _rebuild(frozen: Any) -> Any:
    leaves, spec = frozen
    values = [torch.empty_strided(v[1], v[2], dtype=v[3], device="meta") if v[0] == "t" else v[1]
              for v in leaves]
    return pytree.tree_unflatten(values, spec)


def _describe_value(value: Any) -> tuple[bool, list[int] | None]:
    """(holds a tensor, shape of the first tensor)."""
    if isinstance(value, torch.Tensor):
        return True, list(value.shape)
    if isinstance(value, (list, tuple)):
        for v in value:
            has, shape = _describe_value(v)
            if has:
                return True, shape
    if isinstance(value, dict):
        return _describe_value(list(value.values()))
    return False, None


def _op_type(n: fx.Node) -> str:
    if n.op == "call_method":
        return str(n.target)
    target = n.target
    if target is operator.getitem:
        return "getitem"
    return getattr(target, "__name__", str(target))


# -- graph construction ---------------------------------------------------------------------------------
def model_graph(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224), name: str = "") -> ModelGraph:
    """The model as graph data, shapes for ``input_shape`` computed on meta tensors.

    Raises UserError when the model does not accept that input (e.g. a ViT at the wrong image size).
    """
    shape = [int(s) for s in input_shape]
    with eval_mode(model):
        graph, opaque = _trace(model)
        raw: list[_RawNode] | None = None
        method = "fx"
        if graph is not None:
            with contextlib.suppress(ShapeError):  # the hooks path below re-raises with a located error
                raw = _fx_nodes(model, graph, shape)
        if raw is None:
            method, opaque = "hooks", set()
            try:
                raw = _hook_nodes(model, shape)
            except ShapeError as exc:
                label = name or type(model).__name__
                raise UserError(f"{label} does not accept input {shape}: {exc.describe()}") from None
    return _assemble(model, name, shape, method, raw, opaque)


@dataclass
class _RawNode:
    id: str
    type: str
    kind: str
    shape: list[int] | None
    module: str | None  # module (or parameter) qualified name, for params and block lookup
    context: str | None  # innermost module whose forward created it (op nodes)
    inputs: list[str]
    first_call: bool = True


def _fx_nodes(model: nn.Module, graph: fx.Graph, shape: list[int]) -> list[_RawNode]:
    interp = _ShapeInterpreter(model, graph)
    with meta_shadow(model), torch.no_grad():
        x = torch.empty(shape, device="meta", dtype=_input_dtype(model))
        try:
            interp.run(x)
        except Exception as exc:  # noqa: BLE001
            raise ShapeError(str(exc), None, None, None) from exc
    ids: dict[fx.Node, str] = {}
    calls: dict[str, int] = {}
    out: list[_RawNode] = []
    for n in graph.nodes:
        has_tensor, node_shape = interp.values.get(n, (False, None))
        if n.op == "placeholder":
            node = _RawNode("input", "input", "input", shape, None, None, [])
        elif n.op == "output":
            node = _RawNode("output", "output", "output", None, None, None, [])
            has_tensor = True
        elif not has_tensor:
            continue  # shape arithmetic, asserts: not data flow
        elif n.op == "call_module":
            target = str(n.target)
            k = calls.get(target, 0)
            calls[target] = k + 1
            node_id = target if k == 0 else f"{target}@{k}"
            mtype = type(model.get_submodule(target)).__name__
            node = _RawNode(node_id, mtype, "module", node_shape, target, None, [], first_call=k == 0)
        elif n.op == "get_attr":
            target = str(n.target)
            kind = "parameter" if isinstance(_get_tensor(model, target), nn.Parameter) else "buffer"
            node = _RawNode(target, kind, "op", node_shape, target, _parent(target), [])
        else:
            stack = n.meta.get("nn_module_stack") or {}
            context = next(reversed(stack.values()))[0] if stack else ""
            node = _RawNode(n.name, _op_type(n), "op", node_shape, None, context, [])
        if n.op == "output":
            first = n.args[0] if n.args else None
            node.shape = _output_shape(first, interp.values)
        node.inputs = [ids[i] for i in n.all_input_nodes if i in ids]
        ids[n] = node.id
        out.append(node)
    return out


def _output_shape(arg: Any, values: dict[fx.Node, Any]) -> list[int] | None:
    if isinstance(arg, fx.Node):
        return values.get(arg, (False, None))[1]
    if isinstance(arg, (list, tuple)):
        for a in arg:
            s = _output_shape(a, values)
            if s is not None:
                return s
    return None


def _hook_nodes(model: nn.Module, shape: list[int]) -> list[_RawNode]:
    leaves: list[tuple[str, nn.Module]] = []
    inside_leaf = "\0"  # named_modules is depth-first: a leaf's sub-modules follow it directly
    for name, m in model.named_modules():
        if not name or name.startswith(inside_leaf):
            continue
        if is_leaf_module(m):
            leaves.append((name, m))
            inside_leaf = name + "."
    order: list[tuple[str, list[int] | None]] = []

    def hook(name: str) -> Any:
        def fn(module: nn.Module, args: Any, output: Any) -> None:
            order.append((name, _describe_value(output)[1]))
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in leaves]
    try:
        out = dry_run(model, shape)
    finally:
        for h in handles:
            h.remove()
    nodes = [_RawNode("input", "input", "input", shape, None, None, [])]
    calls: dict[str, int] = {}
    for name, out_shape in order:
        k = calls.get(name, 0)
        calls[name] = k + 1
        node_id = name if k == 0 else f"{name}@{k}"
        mtype = type(model.get_submodule(name)).__name__
        nodes.append(_RawNode(node_id, mtype, "module", out_shape, name, None, [nodes[-1].id], first_call=k == 0))
    nodes.append(_RawNode("output", "output", "output", _describe_value(out)[1], None, None, [nodes[-1].id]))
    return nodes


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _assemble(model: nn.Module, name: str, shape: list[int], method: str, raw: list[_RawNode],
              opaque: set[str]) -> ModelGraph:
    counts = _subtree_counts(model)
    total, trainable = _count(model.parameters())
    units, stages, stage_members = _units_and_stages(model)
    # Modules shown as one node (composite torch.nn layers, untraceable modules) are not blocks.
    hidden = tuple(p + "." for p in _leaf_prefixes(model)) + tuple(p + "." for p in opaque)
    containers = [n for n, m in model.named_modules()
                  if n and n not in opaque and not is_leaf_module(m) and not n.startswith(hidden or ("\0",))]
    container_set = set(containers)

    def real_block(node: _RawNode) -> str:
        """Innermost container holding the node ('' = the model itself)."""
        if node.kind == "module":
            p = _parent(node.module or "")
        elif node.kind == "op":
            p = node.context or ""
        else:
            return ""
        while p and p not in container_set:
            p = _parent(p)
        return p

    blocks_of = [real_block(n) for n in raw]

    # Kinds of the real containers.
    kinds: dict[str, str] = {}
    unit_set = set(units)
    block_like = [u for u in units if u in stage_members
                  or (u in container_set and any(not is_leaf_module(c) for c in model.get_submodule(u).children()))]
    if not block_like:
        block_like = [u for u in units if u in container_set and type(model.get_submodule(u)) not in _CONTAINERS]
    first_body = units.index(block_like[0]) if block_like else len(units)
    stem_units = set(units[:first_body]) if block_like else set()
    for c in containers:
        if c in stages:
            kinds[c] = "stage"
        elif c in unit_set or c in stage_members:
            kinds[c] = "block"
        else:
            kinds[c] = "other"
    for c in containers:
        inside = [u for u in units if u == c or u.startswith(c + ".")]
        if inside and all(u in stem_units for u in inside):
            kinds[c] = "stem"
    head = _safe_head(model)
    if head is not None:
        slot = head_slot(model)
        for c in (slot, head.split(".")[0], slot.split(".")[0]):
            if c in container_set:
                kinds[c] = "head"

    synthetic: list[GraphBlock] = []
    node_block: list[str | None] = [b or None for b in blocks_of]

    def nodes_below(level: str) -> list[int]:
        """Indices of nodes inside a sub-container of ``level`` ('' = the model)."""
        return [i for i, b in enumerate(blocks_of) if (b.startswith(level + ".") if level else b != "")]

    # Synthetic stem: loose nodes at the level of the first parameterised layer, before the first block.
    first_param = next((i for i, n in enumerate(raw) if n.kind == "module" and counts.get(n.module or "", (0, 0))[0] > 0), None)
    first_module = raw[first_param].module or "" if first_param is not None else ""
    if first_param is not None and any(first_module == u or first_module.startswith(u + ".") for u in stem_units):
        level = blocks_of[first_param]
        inside_level = nodes_below(level)
        if level == "" or kinds.get(level) != "stem":
            end = min(inside_level) if inside_level else len(raw)
            members = [i for i in range(end) if blocks_of[i] == level and raw[i].kind in ("module", "op")]
            if any(raw[i].kind == "module" for i in members):
                for i in members:
                    node_block[i] = STEM_ID
                synthetic.append(_synthetic(STEM_ID, "stem", "Stem", level or None, [raw[i] for i in members], counts))
    # Synthetic head: loose top-level nodes after the last node inside a top-level container.
    inside_root = nodes_below("")
    if head is not None and _parent(head) == "" and head in {n.module for n in raw} and inside_root:
        start = max(inside_root) + 1
        members = [i for i in range(start, len(raw)) if blocks_of[i] == "" and raw[i].kind in ("module", "op")]
        if members:
            for i in members:
                node_block[i] = HEAD_ID
            synthetic.append(_synthetic(HEAD_ID, "head", "Head", None, [raw[i] for i in members], counts))

    blocks = [b for b in synthetic if b.id == STEM_ID]
    for c in containers:
        parent = _parent(c)
        while parent and parent not in container_set:
            parent = _parent(parent)
        p, tr = counts[c]
        blocks.append(GraphBlock(c, kinds[c], type(model.get_submodule(c)).__name__, parent or None, p, tr))
    blocks.extend(b for b in synthetic if b.id == HEAD_ID)

    nodes: list[GraphNode] = []
    edges: list[tuple[str, str]] = []
    for n, blk in zip(raw, node_block, strict=True):
        params = trainable_p = 0
        if n.first_call and n.module is not None:
            if n.kind == "module":
                params, trainable_p = counts.get(n.module, (0, 0))
            else:
                t = _get_tensor(model, n.module)
                if isinstance(t, nn.Parameter):
                    params = t.numel()
                    trainable_p = params if t.requires_grad else 0
        nodes.append(GraphNode(n.id, n.type, n.kind, n.shape, params, trainable_p, blk))
        edges.extend((src, n.id) for src in n.inputs)
    return ModelGraph(name or type(model).__name__, shape, method, nodes, edges, blocks, total, trainable)


def _leaf_prefixes(model: nn.Module) -> list[str]:
    """Names of non-trivial leaves (modules with children shown as one node, e.g. MultiheadAttention)."""
    return [n for n, m in model.named_modules() if n and is_leaf_module(m) and next(m.children(), None) is not None]


def _get_tensor(model: nn.Module, name: str) -> Any:
    owner = _get_module(model, _parent(name))
    return getattr(owner, name.rsplit(".", 1)[-1], None) if owner is not None else None


def _safe_head(model: nn.Module) -> str | None:
    try:
        return find_head(model)
    except UserError:
        return None


def _synthetic(block_id: str, kind: str, label: str, parent: str | None, members: list[_RawNode],
               counts: dict[str, tuple[int, int]]) -> GraphBlock:
    p = tr = 0
    seen: set[str] = set()
    for n in members:
        if n.kind == "module" and n.module not in seen:
            seen.add(n.module or "")
            a, b = counts.get(n.module or "", (0, 0))
            p += a
            tr += b
    return GraphBlock(block_id, kind, label, parent, p, tr)
