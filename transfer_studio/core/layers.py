"""Layers surgery can insert or swap in, built from the JSON spec recorded in the project file.

A spec is a dict with a ``type`` and that type's parameters, e.g.::

    {"type": "Dropout", "p": 0.2}
    {"type": "Linear+ReLU", "hidden": 256}        # Linear then an activation (any name below)
    {"type": "BatchNorm"}                          # 1d or 2d, sized from the incoming tensor
    {"type": "Conv2d", "in_channels": 1}           # other settings copied from the layer it replaces
    {"type": "GELU"}                               # activation swap

Sizes left out are inferred from the shape of the tensor the layer receives (``in_shape``) or from
the layer being replaced (``like``). A bad spec raises ``LayerSpecError`` (a UserError) naming the
valid choices.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from transfer_studio.errors import UserError

__all__ = ["ACTIVATIONS", "LayerSpecError", "adapt_conv_weight", "build_layer", "is_activation", "layer_types"]


class LayerSpecError(UserError):
    """A layer spec that cannot be built (unknown type, bad parameter, size that cannot be inferred)."""


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "ReLU": nn.ReLU,
    "ReLU6": nn.ReLU6,
    "LeakyReLU": nn.LeakyReLU,
    "ELU": nn.ELU,
    "GELU": nn.GELU,
    "SiLU": nn.SiLU,
    "Mish": nn.Mish,
    "Hardswish": nn.Hardswish,
    "Hardsigmoid": nn.Hardsigmoid,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
}
# Parameters each activation accepts: name -> (type, validator description, check).
_ACT_PARAMS: dict[str, dict[str, tuple[type, str, Callable[[Any], bool]]]] = {
    "LeakyReLU": {"negative_slope": (float, "a number >= 0", lambda v: v >= 0)},
    "ELU": {"alpha": (float, "a number > 0", lambda v: v > 0)},
    "GELU": {"approximate": (str, '"none" or "tanh"', lambda v: v in ("none", "tanh"))},
}
_OTHER_TYPES = ("Dropout", "Dropout2d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Linear",
                "Conv2d", "Identity")


def layer_types() -> list[str]:
    """Every spec type build_layer knows ("Linear+<activation>" stands for each activation)."""
    return [*_OTHER_TYPES, "Linear+<activation>", *ACTIVATIONS]


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, tuple(ACTIVATIONS.values()))


def build_layer(spec: Mapping[str, Any], *, in_shape: Sequence[int] | None = None,
                like: nn.Module | None = None) -> nn.Module:
    """An nn.Module for ``spec`` (on the CPU, float32; the caller moves it next to the model).

    in_shape: shape of the tensor the layer will receive, used to size it when the spec does not.
    like: the layer this one replaces; a Conv2d replacing a Conv2d inherits its settings and, when
    only the number of input channels changes, its pretrained weights (see ``adapt_conv_weight``).
    """
    if not isinstance(spec, Mapping):
        raise LayerSpecError(f"a layer spec must be an object like {{\"type\": \"Dropout\", \"p\": 0.2}}, "
                             f"got {type(spec).__name__}")
    kind = spec.get("type")
    if not isinstance(kind, str) or not kind:
        raise LayerSpecError("a layer spec needs a \"type\" (one of: " + ", ".join(layer_types()) + ")")
    params = {k: v for k, v in spec.items() if k != "type"}
    if kind in ACTIVATIONS:
        return _activation(kind, params)
    if "+" in kind:
        linear, _, act = kind.partition("+")
        if linear == "Linear" and act in ACTIVATIONS:
            return _linear_act(act, params, in_shape)
    builders: dict[str, Callable[[dict[str, Any], Sequence[int] | None, nn.Module | None], nn.Module]] = {
        "Dropout": lambda p, s, m: _dropout(nn.Dropout, p),
        "Dropout2d": lambda p, s, m: _dropout(nn.Dropout2d, p),
        "BatchNorm": lambda p, s, m: _batchnorm(None, p, s),
        "BatchNorm1d": lambda p, s, m: _batchnorm(1, p, s),
        "BatchNorm2d": lambda p, s, m: _batchnorm(2, p, s),
        "LayerNorm": lambda p, s, m: _layernorm(p, s),
        "Linear": lambda p, s, m: _linear(p, s, m),
        "Conv2d": lambda p, s, m: _conv2d(p, s, m),
        "Identity": lambda p, s, m: _identity(p),
    }
    if kind not in builders:
        close = difflib.get_close_matches(kind, [*builders, *ACTIVATIONS], n=2, cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise LayerSpecError(f"unknown layer type '{kind}'{hint}; valid types: " + ", ".join(layer_types()))
    return builders[kind](params, in_shape, like)


# -- parameter checking ---------------------------------------------------------------------------------
_Rule = tuple[type, str, Callable[[Any], bool]]


def _check_params(kind: str, params: Mapping[str, Any], rules: Mapping[str, _Rule]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in rules:
            valid = ", ".join(rules) or "none"
            raise LayerSpecError(f"{kind} does not take '{key}' (its parameters: {valid})")
        typ, desc, check = rules[key]
        ok_type = (isinstance(value, typ) and not isinstance(value, bool)) if typ in (int, float) else \
            isinstance(value, typ)
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            ok_type, value = True, float(value)
        if not ok_type or not check(value):
            raise LayerSpecError(f"{kind}: '{key}' must be {desc}, got {value!r}")
        out[key] = value
    return out


_POS_INT: _Rule = (int, "a whole number >= 1", lambda v: v >= 1)
_BOOL: _Rule = (bool, "true or false", lambda v: True)
_PROB: _Rule = (float, "a probability in [0, 1)", lambda v: 0.0 <= v < 1.0)


def _features(kind: str, in_shape: Sequence[int] | None, dim: int = -1, need: str = "") -> int:
    if not in_shape or len(in_shape) < 2:
        raise LayerSpecError(f"{kind}: cannot infer its size here (no input shape known); give {need} explicitly")
    return int(in_shape[dim])


# -- builders -----------------------------------------------------------------------------------------------
def _activation(kind: str, params: Mapping[str, Any]) -> nn.Module:
    kwargs = _check_params(kind, params, _ACT_PARAMS.get(kind, {}))
    return ACTIVATIONS[kind](**kwargs)


def _identity(params: Mapping[str, Any]) -> nn.Module:
    _check_params("Identity", params, {})
    return nn.Identity()


def _dropout(cls: type[nn.Module], params: Mapping[str, Any]) -> nn.Module:
    kwargs = _check_params(cls.__name__, params, {"p": _PROB})
    return cls(p=kwargs.get("p", 0.5))


def _batchnorm(dims: int | None, params: Mapping[str, Any], in_shape: Sequence[int] | None) -> nn.Module:
    kind = f"BatchNorm{dims}d" if dims else "BatchNorm"
    kwargs = _check_params(kind, params, {
        "num_features": _POS_INT,
        "eps": (float, "a number > 0", lambda v: v > 0),
        "momentum": (float, "a number in (0, 1]", lambda v: 0 < v <= 1),
    })
    rank = len(in_shape) if in_shape else None
    if dims is None:
        if rank is None and "num_features" not in kwargs:
            _features(kind, None, need="num_features")
        dims = 2 if rank == 4 else 1
    if rank is not None and (dims == 2 and rank != 4 or dims == 1 and rank not in (2, 3)):
        raise LayerSpecError(f"{kind} cannot follow a tensor of shape {list(in_shape or [])}: "
                             f"BatchNorm1d takes (N, C) or (N, C, L), BatchNorm2d takes (N, C, H, W)")
    num = kwargs.pop("num_features", None) or _features(kind, in_shape, 1, "num_features")
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(num, **kwargs)


def _layernorm(params: Mapping[str, Any], in_shape: Sequence[int] | None) -> nn.Module:
    kwargs = _check_params("LayerNorm", params, {"normalized_shape": _POS_INT,
                                                  "eps": (float, "a number > 0", lambda v: v > 0)})
    num = kwargs.pop("normalized_shape", None) or _features("LayerNorm", in_shape, -1, "normalized_shape")
    return nn.LayerNorm(num, **kwargs)


def _flat_features(kind: str, in_shape: Sequence[int] | None, like: nn.Module | None) -> int:
    if isinstance(like, nn.Linear):
        return like.in_features
    if in_shape is not None and len(in_shape) != 2:
        raise LayerSpecError(
            f"{kind} needs a flat (N, features) input, but it would receive shape {list(in_shape)}; "
            "put it after a layer with flat output (e.g. inside the classifier), or use replace_head "
            "with \"hidden\" to add a hidden layer before the head"
        )
    return _features(kind, in_shape, -1, "in_features")


def _linear(params: Mapping[str, Any], in_shape: Sequence[int] | None, like: nn.Module | None) -> nn.Module:
    kwargs = _check_params("Linear", params, {"in_features": _POS_INT, "out_features": _POS_INT, "bias": _BOOL})
    in_f = kwargs.get("in_features") or _flat_features("Linear", in_shape, like)
    default_out = like.out_features if isinstance(like, nn.Linear) else in_f
    return nn.Linear(in_f, kwargs.get("out_features", default_out), bias=kwargs.get("bias", True))


def _linear_act(act: str, params: Mapping[str, Any], in_shape: Sequence[int] | None) -> nn.Module:
    kind = f"Linear+{act}"
    kwargs = _check_params(kind, params, {"hidden": _POS_INT, "in_features": _POS_INT, "dropout": _PROB})
    in_f = kwargs.get("in_features") or _flat_features(kind, in_shape, None)
    hidden = kwargs.get("hidden", in_f)
    layers: list[nn.Module] = [nn.Linear(in_f, hidden), ACTIVATIONS[act]()]
    if kwargs.get("dropout"):
        layers.append(nn.Dropout(kwargs["dropout"]))
    return nn.Sequential(*layers)


def _conv2d(params: Mapping[str, Any], in_shape: Sequence[int] | None, like: nn.Module | None) -> nn.Module:
    int_or_pair = (object, "a whole number >= 1 or a pair of them", _is_size)
    kwargs = _check_params("Conv2d", params, {
        "in_channels": _POS_INT, "out_channels": _POS_INT, "kernel_size": int_or_pair, "stride": int_or_pair,
        "padding": (object, "a whole number >= 0, a pair of them, or \"same\"", _is_padding),
        "dilation": int_or_pair, "groups": _POS_INT, "bias": _BOOL,
        "init": (str, '"pretrained" or "random"', lambda v: v in ("pretrained", "random")),
        "adapt": (str, '"sum" or "mean"', lambda v: v in ("sum", "mean")),
    })
    base: dict[str, Any]
    if isinstance(like, nn.Conv2d):
        base = {"in_channels": like.in_channels, "out_channels": like.out_channels,
                "kernel_size": like.kernel_size, "stride": like.stride, "padding": like.padding,
                "dilation": like.dilation, "groups": like.groups, "bias": like.bias is not None}
    else:
        in_ch = kwargs.get("in_channels") or _features("Conv2d", in_shape, 1, "in_channels")
        if in_shape is not None and len(in_shape) != 4:
            raise LayerSpecError(f"Conv2d needs an (N, C, H, W) input, but it would receive {list(in_shape)}")
        k = kwargs.get("kernel_size", 1)
        base = {"in_channels": in_ch, "out_channels": in_ch, "kernel_size": k, "stride": 1,
                "padding": _same_padding(k), "dilation": 1, "groups": 1, "bias": True}
    init = kwargs.pop("init", "pretrained")
    adapt = kwargs.pop("adapt", "sum")
    base.update(kwargs)
    if "kernel_size" in kwargs and "padding" not in kwargs and not isinstance(like, nn.Conv2d):
        base["padding"] = _same_padding(base["kernel_size"])
    groups = base["groups"]
    if base["in_channels"] % groups or base["out_channels"] % groups:
        raise LayerSpecError(f"Conv2d: in_channels ({base['in_channels']}) and out_channels "
                             f"({base['out_channels']}) must both be divisible by groups ({groups})")
    if isinstance(like, nn.Conv2d) and groups == like.groups == like.in_channels and "groups" not in kwargs \
            and base["in_channels"] != like.in_channels:
        raise LayerSpecError("Conv2d: the layer it replaces is depthwise (groups = channels); give "
                             "\"groups\" for the new channel count explicitly")
    try:
        conv = nn.Conv2d(**base)
    except (ValueError, RuntimeError) as exc:
        raise LayerSpecError(f"Conv2d: {exc}") from exc
    if init == "pretrained" and isinstance(like, nn.Conv2d):
        _copy_conv_weights(like, conv, adapt)
    return conv


def _is_size(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                 and x >= 1 for x in v)


def _is_padding(v: Any) -> bool:
    if v == "same":
        return True
    if isinstance(v, int) and not isinstance(v, bool):
        return v >= 0
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                 and x >= 0 for x in v)


def _same_padding(k: Any) -> Any:
    if isinstance(k, int):
        return k // 2
    return tuple(x // 2 for x in k)


def _copy_conv_weights(old: nn.Conv2d, new: nn.Conv2d, adapt: str) -> None:
    """Carry pretrained weights over when only the input channels differ (or nothing does)."""
    if old.weight.device.type == "meta":
        return  # a shape-only model: nothing to copy
    if (old.out_channels, old.kernel_size, old.groups) != (new.out_channels, new.kernel_size, new.groups):
        return
    with torch.no_grad():
        if old.in_channels == new.in_channels:
            new.weight.copy_(old.weight)
        elif old.groups == 1:
            new.weight.copy_(adapt_conv_weight(old.weight, new.in_channels, adapt))
        else:
            return
        if old.bias is not None and new.bias is not None:
            new.bias.copy_(old.bias)


def adapt_conv_weight(weight: torch.Tensor, in_channels: int, mode: str = "sum") -> torch.Tensor:
    """A pretrained (O, C, kh, kw) kernel for ``in_channels`` inputs.

    One channel: the kernels summed over the input channels ("sum", the default; a grey image fed as
    one channel then produces exactly the activations the RGB network gives that image as three
    equal channels, so BatchNorm statistics still fit) or averaged ("mean", a third of that
    response for RGB). Other counts: the kernels repeated cyclically and scaled by C / in_channels
    (timm's adapt_input_conv), which keeps the response to an image whose channels are all equal
    exactly when in_channels is a multiple of C, and roughly otherwise.
    """
    c = weight.shape[1]
    if in_channels == c:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True) if mode == "sum" else weight.mean(dim=1, keepdim=True)
    reps = math.ceil(in_channels / c)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (c / in_channels)
