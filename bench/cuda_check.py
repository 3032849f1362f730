"""GPU check: mixed precision + channels_last vs fp32 eager, in a bare step loop and through ``fit``.

Run on a machine with a CUDA GPU (no network needed; random-init weights, generated images):

    .venv/bin/python bench/cuda_check.py [--model resnet50] [--batch-size 64] [--steps 30]

1. Step loop: forward + backward + AdamW on synthetic 224px batches, fp32 contiguous ("eager") vs
   autocast (bf16 where supported, else fp16 with a GradScaler) + channels_last: images/s each.
2. Engine: ``fit`` fine-tunes the same network on a generated folder for 2 epochs, once with the
   engine's CUDA settings (AMP + channels_last, pinned memory, workers) and once in fp32 contiguous;
   prints images/s of the second epoch, checks both runs finish, that the checkpoint reloads with
   ``weights_only=True`` and that a stop request ends the run within a batch.

Without CUDA it says so and exits 0: there is nothing to check on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def step_loop(model_name: str, batch: int, steps: int, amp: bool) -> float:
    import torch
    import torch.nn.functional as F
    import torchvision

    from transfer_studio.training.device import choose_precision

    dev = torch.device("cuda")
    precision = choose_precision(dev, amp)
    fmt = torch.channels_last if amp else torch.contiguous_format
    torch.manual_seed(0)
    model = torchvision.models.get_model(model_name, num_classes=10).to(dev, memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if precision.use_scaler else None
    x = torch.randn(batch, 3, 224, 224, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=dev)
    torch.backends.cudnn.benchmark = True

    def step():
        with torch.autocast("cuda", dtype=precision.dtype, enabled=precision.dtype is not None):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def engine_run(data: Path, run_dir: Path, model_name: str, batch: int, amp: bool) -> tuple[float, object]:
    from transfer_studio.config import AugmentSpec, DataSpec, ModelSpec, Project, TrainSpec
    from transfer_studio.training import device as tdevice
    from transfer_studio.training import events as ev
    from transfer_studio.training import fit

    project = Project(name="cuda-check", model=ModelSpec(model_name, weights="none"),
                      data=DataSpec(root=str(data), val_split=0.2),
                      augment=AugmentSpec(preset="light"),
                      train=TrainSpec(strategy="full", epochs=2, batch_size=batch, device="cuda", amp=amp,
                                      image_size=224))
    rates: list[float] = []

    def on_event(e):
        if isinstance(e, ev.BatchEnd) and e.epoch == 2:
            rates.append(e.images_per_s)

    original = tdevice.use_channels_last
    if not amp:  # the fp32 baseline is plain eager: contiguous tensors too
        tdevice.use_channels_last = lambda device: False
    try:
        result = fit(project, [on_event], run_dir=run_dir)
    finally:
        tdevice.use_channels_last = original
    return (rates[-1] if rates else 0.0), result


def stop_check(data: Path, run_dir: Path, model_name: str, batch: int) -> bool:
    from transfer_studio.config import AugmentSpec, DataSpec, ModelSpec, Project, TrainSpec
    from transfer_studio.training import Control, fit
    from transfer_studio.training import events as ev

    control = Control()
    steps: list[int] = []

    def on_event(e):
        if isinstance(e, ev.BatchEnd) and e.epoch == 2:
            steps.append(e.step)
            control.request_stop()

    project = Project(name="cuda-stop", model=ModelSpec(model_name, weights="none"),
                      data=DataSpec(root=str(data), val_split=0.2), augment=AugmentSpec(preset="light"),
                      train=TrainSpec(strategy="full", epochs=3, batch_size=batch, device="cuda", image_size=224))
    result = fit(project, [on_event], control, run_dir=run_dir)
    resumed = fit(None, run_dir=run_dir, resume=True)
    ok = result.status == "stopped" and result.epochs_completed == 1 and resumed.status == "finished"
    print(f"  stop request: status {result.status} after {result.epochs_completed} epoch(s), batch events "
          f"after the request: {max(0, len(steps) - 1)}; resumed run: {resumed.status} "
          f"({resumed.epochs_completed} epochs)")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--images-per-class", type=int, default=96)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("CUDA is not available on this machine: nothing to check (run this on a machine with an "
              "NVIDIA GPU).")
        return 0
    name = torch.cuda.get_device_name(0)
    cap = torch.cuda.get_device_capability(0)
    print(f"GPU: {name} (compute capability {cap[0]}.{cap[1]}), bf16 supported: "
          f"{torch.cuda.is_bf16_supported()}, torch {torch.__version__}")

    from transfer_studio.training.device import choose_precision

    prec = choose_precision(torch.device("cuda")).name
    print(f"\n1. step loop, {args.model}, batch {args.batch_size}, 224px, {args.steps} steps")
    fp32 = step_loop(args.model, args.batch_size, args.steps, amp=False)
    mixed = step_loop(args.model, args.batch_size, args.steps, amp=True)
    print(f"  fp32 eager:              {fp32:8.0f} images/s")
    print(f"  {prec} + channels_last:    {mixed:8.0f} images/s   ({mixed / fp32:.2f}x)")

    from helpers.images import make_class_folder

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = make_class_folder(Path(tmp) / "data", {f"c{i}": args.images_per_class for i in range(10)},
                                 size=256)
        print(f"\n2. fit(), full fine-tune, {args.model}, {10 * args.images_per_class} generated images, "
              f"batch {args.batch_size}, 2 epochs")
        rate_fp32, r1 = engine_run(data, Path(tmp) / "fp32", args.model, args.batch_size, amp=False)
        rate_amp, r2 = engine_run(data, Path(tmp) / "amp", args.model, args.batch_size, amp=True)
        for label, rate, r in (("fp32 eager", rate_fp32, r1), (f"{prec} + channels_last", rate_amp, r2)):
            secs = [h["seconds"] for h in r.history]
            print(f"  {label:22s} {rate:8.0f} images/s (epoch 2), epoch seconds "
                  f"{', '.join(f'{s:.1f}' for s in secs)}, status {r.status}, device {r.device}")
            failures += r.status != "finished"
        if rate_fp32:
            print(f"  speed-up through fit: {rate_amp / rate_fp32:.2f}x")
        state = torch.load(Path(tmp) / "amp" / "checkpoint_last.pt", weights_only=True)
        print(f"  checkpoint reloads with weights_only=True: epoch {state['epoch']}, "
              f"scaler state {'present' if state['scaler'] else 'not needed (bf16)'}")
        print("\n3. stop and resume on the GPU")
        failures += not stop_check(data, Path(tmp) / "stop", args.model, args.batch_size)
    print("\nOK" if not failures else f"\n{failures} check(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
