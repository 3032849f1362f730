"""Freezing and layer changes, replayed from the project file's ``SurgeryOp`` list.

Ops (see ``config.SurgeryOp``):
  freeze / unfreeze   target: a module or parameter name, a prefix ending in "*", or "" / "*" for all
  freeze_before       target: a freeze unit (``ordered_blocks``) or a stage (= its first unit); freezes
                      every parameter outside that unit and the ones after it (the stem, earlier
                      blocks, loose embeddings such as ViT's class token); trainable flags of the
                      units from the target on are left as they are
  replace_head        params: num_classes (>= 2), dropout?, hidden?; finds the head itself
                      (fc, classifier[-1], heads.head, head, _fc, squeezenet's 1x1 conv) and also
                      resizes the auxiliary heads of GoogLeNet / Inception v3 when present
  replace             target: a module, or a prefix ending in "*" to swap every activation under it;
                      params: {"layer": spec} (``core.layers``), optionally "of_type" for prefixes
  insert_after        target: a module; params: {"layer": spec}; the target becomes
                      Sequential(original, new), so it is then named target.0 and the new layer target.1
  remove              target: a module, replaced by Identity

Every structural change is checked by a dry forward on meta tensors; if shapes no longer fit the
change is undone and ``SurgeryError`` says which layer received what. Modules added or replaced are
remembered on the model (``modified_modules``) for the GUI's "new/modified" colour.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from transfer_studio.config import SurgeryOp
from transfer_studio.core import layers
from transfer_studio.core.graph import (
    AUX_HEADS,
    HEAD_SLOT_ATTR,
    ShapeError,
    dry_run,
    find_head,
    head_slot,
    ordered_blocks,
)
from transfer_studio.errors import UserError

__all__ = [
    "OPS",
    "SurgeryError",
    "apply_op",
    "apply_ops",
    "find_head",
    "freeze_state",
    "modified_modules",
    "ordered_blocks",
    "param_counts",
]

OPS = ("freeze", "unfreeze", "freeze_before", "replace_head", "replace", "insert_after", "remove")
_MODIFIED_ATTR = "_ts_modified"
# Final layers of the auxiliary classifiers that replace_head resizes along with the main head.
_AUX_FINAL = ("aux1.fc2", "aux2.fc2", "AuxLogits.fc")


class SurgeryError(UserError):
    """A surgery op that cannot be applied; the model is left as it was before the op."""


# -- queries ------------------------------------------------------------------------------------------------
def param_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, shared parameters counted once."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def modified_modules(model: nn.Module) -> set[str]:
    """Names of modules that surgery added or replaced (their sub-modules are new as well)."""
    return set(model.__dict__.get(_MODIFIED_ATTR, ()))


def freeze_state(model: nn.Module) -> dict[str, bool | None]:
    """Every module holding parameters -> True (all trainable), False (all frozen), None (mixed)."""
    state: dict[str, bool | None] = {}

    def visit(m: nn.Module, name: str) -> tuple[int, int]:
        n = t = 0
        for p in m._parameters.values():
            if p is not None:
                n += 1
                t += int(p.requires_grad)
        for child_name, child in m._modules.items():
            if child is not None:
                cn, ct = visit(child, f"{name}.{child_name}" if name else child_name)
                n += cn
                t += ct
        if n:
            state[name] = True if t == n else False if t == 0 else None
        return n, t

    visit(model, "")
    return state


# -- applying ops ------------------------------------------------------------------------------------------
def apply_ops(model: nn.Module, ops: Iterable[SurgeryOp | Mapping[str, Any]],
              input_shape: Sequence[int] = (1, 3, 224, 224)) -> nn.Module:
    """Apply ops in order; a failing op raises SurgeryError naming its step (earlier steps stay applied)."""
    ops = list(ops)
    for i, op in enumerate(ops, 1):
        try:
            apply_op(model, op, input_shape)
        except SurgeryError as exc:
            prefix = f"surgery step {i} of {len(ops)}: " if len(ops) > 1 else ""
            raise SurgeryError(prefix + str(exc)) from None
    return model


def apply_op(model: nn.Module, op: SurgeryOp | Mapping[str, Any],
             input_shape: Sequence[int] = (1, 3, 224, 224)) -> None:
    """Apply one op. Structural ops are validated by a meta dry forward and undone if it fails."""
    op = _as_op(op)
    if op.op in ("freeze", "unfreeze"):
        _set_trainable(model, op.target, op.op == "unfreeze", op)
    elif op.op == "freeze_before":
        _freeze_before(model, op)
    elif op.op == "replace_head":
        _replace_head(model, op, input_shape)
    elif op.op == "replace":
        _replace(model, op, input_shape)
    elif op.op == "insert_after":
        _insert_after(model, op, input_shape)
    else:
        _remove(model, op, input_shape)


def _as_op(op: SurgeryOp | Mapping[str, Any]) -> SurgeryOp:
    if isinstance(op, Mapping):
        unknown = set(op) - {"op", "target", "params"}
        if unknown:
            raise SurgeryError(f"surgery op has unknown keys {sorted(unknown)} (valid: op, target, params)")
        op = SurgeryOp(op=op.get("op", ""), target=op.get("target", ""), params=op.get("params") or {})
    if not isinstance(op, SurgeryOp):
        raise SurgeryError(f"a surgery op must be an object with op/target/params, got {type(op).__name__}")
    if op.op not in OPS:
        close = difflib.get_close_matches(str(op.op), OPS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SurgeryError(f"unknown surgery op '{op.op}'{hint}; valid ops: {', '.join(OPS)}")
    if not isinstance(op.target, str):
        raise SurgeryError(f"{op.op}: target must be a module name (text), got {op.target!r}")
    if not isinstance(op.params, dict):
        raise SurgeryError(f"{op.op}: params must be an object, got {type(op.params).__name__}")
    return op


def _describe(op: SurgeryOp) -> str:
    return f"{op.op} '{op.target}'" if op.target else op.op


# -- freezing ------------------------------------------------------------------------------------------------
def _set_trainable(model: nn.Module, target: str, trainable: bool, op: SurgeryOp) -> None:
    _no_params(op, allowed=())
    for p in _select_params(model, target, op):
        p.requires_grad_(trainable)


def _select_params(model: nn.Module, target: str, op: SurgeryOp) -> list[nn.Parameter]:
    target = target.strip()
    if target in ("", "*"):
        return list(model.parameters())
    if target.endswith("*"):
        prefix = target[:-1]
        found: dict[int, nn.Parameter] = {}
        for name, p in model.named_parameters():
            if name.startswith(prefix):
                found[id(p)] = p
        if not found:
            raise SurgeryError(f"{_describe(op)}: no parameter name starts with '{prefix}'"
                               + _suggest(prefix, _module_names(model)))
        return list(found.values())
    modules = dict(model.named_modules())
    if target in modules:
        params = list(modules[target].parameters())
        if not params:
            raise SurgeryError(f"{_describe(op)}: '{target}' ({type(modules[target]).__name__}) has no parameters")
        return params
    named = dict(model.named_parameters())
    if target in named:
        return [named[target]]
    raise SurgeryError(f"{_describe(op)}: the model has no module or parameter named '{target}'"
                       + _suggest(target, list(modules) + list(named)))


def _freeze_before(model: nn.Module, op: SurgeryOp) -> None:
    _no_params(op, allowed=())
    units = ordered_blocks(model)
    target = op.target.strip()
    # A stage or other container stands for its first block ("layer3" = "layer3.0").
    first = next((u for u in units if u == target or u.startswith(target + ".")), None) if target else None
    if first is None:
        raise SurgeryError(f"{_describe(op)}: '{target}' is not one of the model's blocks"
                           + _suggest(target, units) + f" (blocks in order: {_short_list(units)})")
    keep: set[int] = set()
    modules = dict(model.named_modules())
    for unit in units[units.index(first):]:
        keep.update(id(p) for p in modules[unit].parameters())
    for p in model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)


# -- structural ops ------------------------------------------------------------------------------------------
def _replace_head(model: nn.Module, op: SurgeryOp, input_shape: Sequence[int]) -> None:
    _no_params(op, allowed=("num_classes", "dropout", "hidden"))
    n = op.params.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise SurgeryError(f"replace_head needs num_classes >= 2 (got {n!r}): a classifier must tell at "
                           "least two classes apart")
    dropout = op.params.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise SurgeryError(f"replace_head: dropout must be a probability in [0, 1), got {dropout!r}")
    hidden = op.params.get("hidden")
    if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1):
        raise SurgeryError(f"replace_head: hidden must be a whole number >= 1 (the hidden layer's width), "
                           f"got {hidden!r}")
    slot = op.target.strip() or head_slot(model)
    old = _module(model, slot, op)
    first = next((m for m in old.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if first is None:
        raise SurgeryError(f"replace_head: '{slot}' ({type(old).__name__}) is not a Linear or Conv2d "
                           "classifier; name the head's module as the op's target")
    conv = isinstance(first, nn.Conv2d)
    in_features = first.in_channels if conv else first.in_features
    new = _make_head(in_features, n, float(dropout), hidden, conv)
    changes = [(slot, new)]
    for aux in _AUX_FINAL:
        aux_old = _find(model, aux)
        if isinstance(aux_old, nn.Linear):
            changes.append((aux, nn.Linear(aux_old.in_features, n)))
    _swap_validated(model, changes, op, input_shape)
    model.__dict__[HEAD_SLOT_ATTR] = slot
    _mark(model, [name for name, _ in changes])


def _make_head(in_features: int, n: int, dropout: float, hidden: int | None, conv: bool) -> nn.Module:
    def layer(i: int, o: int) -> nn.Module:
        return nn.Conv2d(i, o, kernel_size=1) if conv else nn.Linear(i, o)

    if not dropout and hidden is None:
        return layer(in_features, n)
    parts: list[nn.Module] = []
    if dropout:
        parts.append(nn.Dropout2d(dropout) if conv else nn.Dropout(dropout))
    if hidden is not None:
        parts += [layer(in_features, hidden), nn.ReLU()]
        in_features = hidden
    parts.append(layer(in_features, n))
    return nn.Sequential(*parts)


def _replace(model: nn.Module, op: SurgeryOp, input_shape: Sequence[int]) -> None:
    _no_params(op, allowed=("layer", "of_type"))
    spec = _layer_spec(op)
    target = op.target.strip()
    if target.endswith("*"):
        _replace_activations(model, op, spec, target[:-1], input_shape)
        return
    if "of_type" in op.params:
        raise SurgeryError(f"{_describe(op)}: \"of_type\" only applies to a prefix target ending in \"*\"")
    old = _module(model, target, op)
    in_shape, _ = _io_shapes(model, target, input_shape)
    new = _build(op, spec, in_shape=in_shape, like=old)
    _swap_validated(model, [(target, new)], op, _input_shape_after(model, target, new, input_shape))
    _mark(model, [target])


def _replace_activations(model: nn.Module, op: SurgeryOp, spec: Mapping[str, Any], prefix: str,
                         input_shape: Sequence[int]) -> None:
    if spec.get("type") not in layers.ACTIVATIONS:
        raise SurgeryError(f"{_describe(op)}: a prefix target swaps activations only; "
                           f"\"{spec.get('type')}\" is not one of {', '.join(layers.ACTIVATIONS)}")
    of_type = op.params.get("of_type")
    if of_type is not None and of_type not in layers.ACTIVATIONS:
        raise SurgeryError(f"{_describe(op)}: of_type must be one of {', '.join(layers.ACTIVATIONS)}, "
                           f"got {of_type!r}")
    targets = [name for name, m in model.named_modules()
               if name and name.startswith(prefix) and layers.is_activation(m)
               and (of_type is None or type(m) is layers.ACTIVATIONS[of_type])]
    if not targets:
        what = f"{of_type} activation" if of_type else "activation module"
        raise SurgeryError(f"{_describe(op)}: no {what} under '{prefix or 'the model'}' (activations called "
                           "as functions inside a block's forward cannot be swapped)")
    changes = [(name, _build(op, spec)) for name in targets]
    _swap_validated(model, changes, op, input_shape)
    _mark(model, targets)


def _insert_after(model: nn.Module, op: SurgeryOp, input_shape: Sequence[int]) -> None:
    _no_params(op, allowed=("layer",))
    spec = _layer_spec(op)
    target = op.target.strip()
    old = _module(model, target, op)
    _, out_shape = _io_shapes(model, target, input_shape)
    if out_shape is None:
        raise SurgeryError(f"{_describe(op)}: '{target}' is not used by the model's forward pass, so "
                           "nothing inserted after it would run")
    new = _build(op, spec, in_shape=out_shape)
    _swap_validated(model, [(target, nn.Sequential(old, new))], op, input_shape)
    _rename(model, target, target + ".0")
    _mark(model, [target + ".1"])


def _remove(model: nn.Module, op: SurgeryOp, input_shape: Sequence[int]) -> None:
    _no_params(op, allowed=())
    target = op.target.strip()
    _module(model, target, op)
    slot = head_slot(model)
    if target == slot or slot.startswith(target + ".") or find_head(model).startswith(target + "."):
        raise SurgeryError(f"{_describe(op)}: '{target}' holds the classification head; use replace_head to "
                           "change it instead of removing it")
    _swap_validated(model, [(target, nn.Identity())], op, input_shape)
    _mark(model, [target])


# -- helpers -------------------------------------------------------------------------------------------------
def _no_params(op: SurgeryOp, allowed: Sequence[str]) -> None:
    extra = sorted(set(op.params) - set(allowed))
    if extra:
        valid = ", ".join(allowed) if allowed else "none"
        raise SurgeryError(f"{_describe(op)}: unknown params {extra} (valid for {op.op}: {valid})")


def _layer_spec(op: SurgeryOp) -> Mapping[str, Any]:
    spec = op.params.get("layer")
    if not isinstance(spec, Mapping):
        raise SurgeryError(f"{_describe(op)}: params.layer must be a layer spec such as "
                           "{\"type\": \"Dropout\", \"p\": 0.2}; types: " + ", ".join(layers.layer_types()))
    return spec


def _build(op: SurgeryOp, spec: Mapping[str, Any], **kwargs: Any) -> nn.Module:
    try:
        return layers.build_layer(spec, **kwargs)
    except layers.LayerSpecError as exc:
        raise SurgeryError(f"{_describe(op)}: {exc}") from None


def _module_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def _find(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name) if name else None
    except AttributeError:
        return None


def _module(model: nn.Module, name: str, op: SurgeryOp) -> nn.Module:
    if not name:
        raise SurgeryError(f"{op.op} needs a target: the qualified name of a module, e.g. 'layer4.1.conv2'")
    found = _find(model, name)
    if found is None:
        raise SurgeryError(f"{_describe(op)}: the model has no module named '{name}'"
                           + _suggest(name, _module_names(model)))
    return found


def _suggest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _short_list(names: Sequence[str], n: int = 6) -> str:
    if len(names) <= 2 * n:
        return ", ".join(names)
    return ", ".join(names[:n]) + ", ..., " + ", ".join(names[-n:])


def _io_shapes(model: nn.Module, name: str, input_shape: Sequence[int]) -> tuple[list[int] | None, list[int] | None]:
    """Shapes of the first tensor a module receives and returns on its first call (None: never runs)."""
    module = model.get_submodule(name)
    seen: dict[str, list[int]] = {}

    def hook(m: nn.Module, args: Any, output: Any) -> None:
        if "in" not in seen:
            seen["in"] = _first_shape(args)
            seen["out"] = _first_shape(output)

    handle = module.register_forward_hook(hook)
    try:
        dry_run(model, _model_input_shape(model, input_shape))
    except ShapeError as exc:
        raise SurgeryError(f"the model does not run on input {list(input_shape)} before this change: "
                           f"{exc.describe()}") from None
    finally:
        handle.remove()
    return seen.get("in"), seen.get("out")


def _first_shape(value: Any) -> list[int] | None:
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (list, tuple)):
        for v in value:
            s = _first_shape(v)
            if s is not None:
                return s
    return None


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and name.split(".")[0] not in AUX_HEADS:
            return name, m
    return None


def _model_input_shape(model: nn.Module, input_shape: Sequence[int]) -> list[int]:
    """input_shape with the channel count the model's first convolution actually takes."""
    shape = [int(s) for s in input_shape]
    first = _first_conv(model)
    if first is not None and len(shape) == 4:
        shape[1] = first[1].in_channels
    return shape


def _input_shape_after(model: nn.Module, target: str, new: nn.Module, input_shape: Sequence[int]) -> list[int]:
    shape = _model_input_shape(model, input_shape)
    first = _first_conv(model)
    if first is not None and first[0] == target and isinstance(new, nn.Conv2d) and len(shape) == 4:
        shape[1] = new.in_channels  # a new input conv (e.g. 1-channel images) changes the model's input
    return shape


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _swap_validated(model: nn.Module, changes: list[tuple[str, nn.Module]], op: SurgeryOp,
                    input_shape: Sequence[int]) -> None:
    """Put the new modules in place, dry-run the model, and put the old ones back if it fails."""
    device, dtype = _placement(model)
    undo: list[tuple[nn.Module, str, nn.Module]] = []
    for name, new in changes:
        parent_name, _, key = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = new.to(device=device, dtype=dtype) if dtype.is_floating_point else new.to(device=device)
        new.train(parent.training)  # a new layer follows the model's train/eval mode
        undo.append((parent, key, parent._modules[key]))
        parent._modules[key] = new
    try:
        out = dry_run(model, _model_input_shape(model, input_shape))
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(f"the network's output would be {got} instead of (batch, classes)", None, None, None)
    except ShapeError as exc:
        for parent, key, old in reversed(undo):
            parent._modules[key] = old
        raise SurgeryError(f"{_describe(op)} does not fit the network: {exc.describe()}") from None


def _mark(model: nn.Module, names: Iterable[str]) -> None:
    marked = model.__dict__.setdefault(_MODIFIED_ATTR, set())
    for name in names:
        # A replaced module's old sub-modules are gone; the new name covers its whole subtree.
        for old in [m for m in marked if m.startswith(name + ".")]:
            marked.discard(old)
        marked.add(name)


def _rename(model: nn.Module, old: str, new: str) -> None:
    """A module moved from ``old`` to ``new`` (wrapped): update the records that name it."""
    marked = model.__dict__.get(_MODIFIED_ATTR)
    if marked:
        moved = {m for m in marked if m == old or m.startswith(old + ".")}
        marked.difference_update(moved)
        marked.update(new + m[len(old):] for m in moved)
    slot = model.__dict__.get(HEAD_SLOT_ATTR)
    if slot and (slot == old or slot.startswith(old + ".")):
        model.__dict__[HEAD_SLOT_ATTR] = new + slot[len(old):]
