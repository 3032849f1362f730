"""What trains when: the freeze/unfreeze schedule, frozen BatchNorm, and parameter groups.

Strategies:
  head     only the new head (and layers surgery added) trains, for every epoch.
  partial  head only for ``train.head_epochs`` epochs (on cached features: fitted to convergence, see
           ``training.head_fit``), then the chosen blocks unfreeze too: from
           ``train.unfreeze_from`` onwards, else what the surgery freeze map leaves trainable, else the
           last quarter of the blocks. The pretrained body gets ``lr * body_lr_factor``.
  full     everything the surgery map leaves trainable (all of it by default), after ``train.head_epochs``
           epochs of the new head alone (LP-FT; 0 = from the first epoch).

A frozen BatchNorm layer must not update its running statistics either: ``requires_grad=False`` does
not stop that, and a parent's ``.train()`` undoes a child's ``.eval()``, so ``train_mode`` re-applies
eval to frozen BatchNorm layers after every ``.train()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transfer_studio.errors import UserError

STRATEGIES = ("head", "partial", "full")


@dataclass
class Phase:
    name: str  # "head" | "unfrozen" | "full"
    first_epoch: int  # 1-based
    trainable: set[str]  # parameter names
    unfrozen_blocks: list[str] = field(default_factory=list)  # blocks that start training here


@dataclass
class FreezePlan:
    strategy: str
    head_params: set[str]  # parameters of the head and of layers surgery added: trained at the head lr
    phases: list[Phase]
    notes: list[str] = field(default_factory=list)

    def phase_index(self, epoch: int) -> int:
        """The phase the (1-based) epoch trains in."""
        idx = 0
        for i, phase in enumerate(self.phases):
            if epoch >= phase.first_epoch:
                idx = i
        return idx


def _owner(param_name: str) -> str:
    return param_name.rpartition(".")[0]


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def head_parameter_names(model: nn.Module) -> set[str]:
    """Parameters of the classifier head and of every module surgery added or replaced."""
    from transfer_studio.core import surgery

    units = {surgery.find_head(model)}
    units |= set(surgery.modified_modules(model))
    return {n for n, _ in model.named_parameters() if any(_under(_owner(n), u) for u in units)}


def _blocks_from(model: nn.Module, first: str) -> list[str]:
    from transfer_studio.core import surgery

    blocks = surgery.ordered_blocks(model)
    for i, name in enumerate(blocks):
        if name == first or name.startswith(first + "."):
            return blocks[i:]
    # A stage name ("layer3") may hold several freeze units ("layer3.0", "layer3.1").
    shown = ", ".join(blocks[:4] + ["..."] + blocks[-3:]) if len(blocks) > 8 else ", ".join(blocks)
    raise UserError(f"train.unfreeze_from names {first!r}, which is not a block of this network "
                    f"(blocks: {shown})")


def plan(model: nn.Module, strategy: str, *, epochs: int, head_epochs: int = 1,
         unfreeze_from: str | None = None) -> FreezePlan:
    """Decide which parameters train in which epochs. Reads the surgery freeze map from
    ``requires_grad`` as ``build_network`` left it, so call this before changing any flags."""
    from transfer_studio.core import surgery

    if strategy not in STRATEGIES:
        raise UserError(f"unknown training strategy {strategy!r}: choose head, partial or full")
    names = [n for n, _ in model.named_parameters()]
    head = head_parameter_names(model)
    if not head:
        raise UserError("the network has no trainable head: check the project's surgery")
    surgery_trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    surgery_freezes = len(surgery_trainable - head) < len(set(names) - head)
    notes: list[str] = []

    if strategy == "head":
        return FreezePlan(strategy, head, [Phase("head", 1, set(head))], notes)
    head_epochs = max(0, int(head_epochs))
    if strategy == "full":
        trainable = surgery_trainable | head
        if surgery_freezes:
            notes.append(f"the project's freeze map keeps {len(set(names) - trainable)} parameter "
                         "tensors frozen in full training")
        if 0 < head_epochs < epochs:  # LP-FT: the new head converges before the body moves
            return FreezePlan(strategy, head, [Phase("head", 1, set(head)), Phase("full", head_epochs + 1, trainable)],
                              notes)
        return FreezePlan(strategy, head, [Phase("full", 1, trainable)], notes)

    # partial
    blocks = [b for b in surgery.ordered_blocks(model) if not any(_under(b, h) or _under(h, b)
                                                                   for h in {_owner(n) for n in head})]
    if unfreeze_from:
        unfrozen_blocks = [b for b in _blocks_from(model, unfreeze_from)
                           if b in blocks]
        body = {n for n in names if any(_under(_owner(n), b) for b in unfrozen_blocks)}
    elif surgery_freezes:
        body = surgery_trainable - head
        unfrozen_blocks = [b for b in blocks if any(_under(_owner(n), b) for n in body)]
    else:
        k = max(1, len(blocks) // 4)
        unfrozen_blocks = blocks[-k:]
        body = {n for n in names if any(_under(_owner(n), b) for b in unfrozen_blocks)}
        notes.append(f"partial: no unfreeze point set; unfreezing the last {k} block(s) from "
                     f"{unfrozen_blocks[0]!r}")
    phases = []
    if head_epochs > 0:
        phases.append(Phase("head", 1, set(head)))
    if head_epochs < epochs or not phases:
        phases.append(Phase("unfrozen", head_epochs + 1, set(head) | body, unfrozen_blocks))
    else:
        notes.append(f"partial: head_epochs ({head_epochs}) >= epochs ({epochs}), so the body never "
                     "unfreezes in this run")
    return FreezePlan(strategy, head, phases, notes)


def apply_trainable(model: nn.Module, trainable: set[str]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)


def frozen_batchnorms(model: nn.Module, *, all_stats: bool = False) -> list[nn.Module]:
    """BatchNorm layers whose parameters are all frozen (or, without affine parameters, whose
    nearest parent with parameters is fully frozen); with ``all_stats`` every BatchNorm layer (its
    running statistics stay as they are, its scale and shift still train)."""
    mods = dict(model.named_modules())
    if all_stats:
        return [m for m in mods.values() if isinstance(m, _BatchNorm)]
    out = []
    for name, m in mods.items():
        if not isinstance(m, _BatchNorm):
            continue
        params = list(m.parameters(recurse=False))
        if params:
            frozen = not any(p.requires_grad for p in params)
        else:
            frozen = True
            parent = name
            while parent:
                parent = parent.rpartition(".")[0]
                pparams = list(mods[parent].parameters())
                if pparams:
                    frozen = not any(p.requires_grad for p in pparams)
                    break
        if frozen:
            out.append(m)
    return out


def train_mode(model: nn.Module, frozen_bn: list[nn.Module] | None = None) -> None:
    """``model.train()``, then frozen BatchNorm layers back to eval (running stats stay put)."""
    model.train()
    for m in frozen_bn if frozen_bn is not None else frozen_batchnorms(model):
        m.eval()


def _no_decay(name: str, p: torch.Tensor) -> bool:
    # Biases and normalisation scales are not weight-decayed (standard AdamW practice).
    return p.ndim <= 1


def param_groups(model: nn.Module, names: set[str], *, lr: float, weight_decay: float,
                 role: str) -> list[dict]:
    """AdamW groups for ``names``: decayed and non-decayed, each tagged with its role and base lr.
    Empty groups are left out; the order is the model's parameter order, so it is reproducible."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if n in names:
            (no_decay if _no_decay(n, p) else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "base_lr": lr, "weight_decay": weight_decay,
                       "role": role})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "base_lr": lr, "weight_decay": 0.0, "role": role})
    return groups


def trainable_count(model: nn.Module) -> tuple[int, int]:
    from transfer_studio.core import surgery

    return surgery.param_counts(model)
