"""Job folders: a project packed to train on several GPUs or a cluster (torchrun, SLURM).

``write_job_folder(project, folder, ...)`` writes, Qt- and torch-free:

    project.tsproj   the project with its split frozen (every machine trains on the same images)
    run_local.sh     torchrun on one machine, one process per GPU (NPROC=... to change)
    slurm.sbatch     the same on several machines through SLURM (srun starts torchrun on each node)
    README.md        how to run them and how to bring the run folder back

Both scripts start the run in ``runs/NAME`` beside them, or resume it when it holds a checkpoint, so
submitting again after a failure or a time limit continues the run. The run folder is an ordinary run
folder: ``transfer-studio evaluate/export`` and the app's Evaluate and Try pages open it.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from transfer_studio.config import Project, atomic_write_text
from transfer_studio.errors import UserError

PROJECT_FILE = "project.tsproj"
LOCAL_SCRIPT = "run_local.sh"
SLURM_SCRIPT = "slurm.sbatch"
README = "README.md"
RDZV_PORT = 29400


@dataclass(frozen=True)
class JobSpec:
    gpus_per_node: int = 1
    nodes: int = 2  # of the SLURM template
    time_limit: str = "04:00:00"
    cpus_per_gpu: int = 8
    python: str = "python3"  # the interpreter with transfer-studio installed, on the machines that run it


@dataclass(frozen=True)
class JobFolder:
    folder: Path
    run_name: str
    files: tuple[Path, ...]


def _name(project: Project) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", project.name or "project").strip("-.") or "project"


def _frozen_split(project: Project) -> Project:
    """A copy whose split is recorded (made as training would make it) and data folder absolute."""
    snap = project.copy()
    if not snap.data.root:
        raise UserError("the project has no data folder: choose one before writing a job folder")
    root = Path(snap.data.root).expanduser()
    if not root.is_dir():
        raise UserError(f"the data folder {root} does not exist")
    snap.data.root = str(root.resolve())
    if not snap.data.split:
        from transfer_studio.core import dataset

        report = dataset.scan(snap.data.root)
        snap.data.split = dataset.make_split(report, val=snap.data.val_split, test=snap.data.test_split,
                                             seed=snap.data.seed)
        snap.data.classes = list(report.classes)
    return snap


_RUN_OR_RESUME = """\
run="runs/{run}"
if [ -f "$run/project.json" ]; then
  args=(--resume "$run")  # the run was started before: continue it from its last checkpoint
else
  args=(--project {project} --out "$run")
fi
"""


def local_script(run: str, spec: JobSpec) -> str:
    return f"""#!/usr/bin/env bash
# Train this job's project on this machine: torchrun starts one process per GPU (NPROC of them) and
# DistributedDataParallel keeps them in step. Running it again resumes the run from its checkpoint.
#   ./{LOCAL_SCRIPT}                 NPROC={spec.gpus_per_node}, python: {spec.python}
#   NPROC=8 PYTHON=/opt/venv/bin/python ./{LOCAL_SCRIPT} --epochs 20   (extra train options)
set -euo pipefail
cd "$(dirname "$0")"
NPROC="${{NPROC:-{spec.gpus_per_node}}}"
PYTHON="${{PYTHON:-{spec.python}}}"
{_RUN_OR_RESUME.format(run=run, project=PROJECT_FILE)}
exec "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \\
  -m transfer_studio train "${{args[@]}}" "$@"
"""


def slurm_script(run: str, spec: JobSpec) -> str:
    return f"""#!/usr/bin/env bash
# SLURM template: {spec.nodes} machine(s) x {spec.gpus_per_node} GPU(s). Adjust the #SBATCH lines to your
# cluster (partition, account), then: sbatch {SLURM_SCRIPT}
# srun starts torchrun once per machine; torchrun starts one process per GPU there; they meet at the
# first machine (c10d rendezvous). Submitting again resumes the run from its checkpoint.
#SBATCH --job-name={run}
#SBATCH --nodes={spec.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={spec.gpus_per_node}
#SBATCH --cpus-per-task={spec.cpus_per_gpu * spec.gpus_per_node}
#SBATCH --time={spec.time_limit}
#SBATCH --output=slurm-%j.out
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
PYTHON="${{PYTHON:-{spec.python}}}"
GPUS_PER_NODE="${{GPUS_PER_NODE:-{spec.gpus_per_node}}}"
head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
{_RUN_OR_RESUME.format(run=run, project=PROJECT_FILE)}
srun "$PYTHON" -m torch.distributed.run --nnodes "$SLURM_NNODES" --nproc-per-node "$GPUS_PER_NODE" \\
  --rdzv-backend c10d --rdzv-id "$SLURM_JOB_ID" --rdzv-endpoint "$head_node:{RDZV_PORT}" \\
  -m transfer_studio train "${{args[@]}}" "$@"
"""


def readme(project: Project, run: str, spec: JobSpec) -> str:
    return f"""# Job: {project.name or run}

Model {project.model.name}, strategy {project.train.strategy}, {project.train.epochs} epochs, batch size
{project.train.batch_size} per GPU (the global batch is that times the number of GPUs). Images:
`{project.data.root}` (the split is frozen in `{PROJECT_FILE}`; if the images live elsewhere on the
machines that train, edit `data.root` there).

## Run

- One machine, all its GPUs: `./{LOCAL_SCRIPT}` (`NPROC=8 ./{LOCAL_SCRIPT}` for 8 GPUs;
  `PYTHON=/path/to/venv/bin/python` for the Python with transfer-studio installed).
- Several machines with SLURM: adjust the `#SBATCH` lines, then `sbatch {SLURM_SCRIPT}`.
- Extra `train` options go after the script: `./{LOCAL_SCRIPT} --epochs 30`.

Progress is printed by the first process; the run folder is `runs/{run}`. After a failure or a time
limit, run the same command again: it resumes from the last completed epoch (with any number of GPUs).

## Bring the results back

Copy `runs/{run}` back to this computer (e.g. `rsync -a cluster:path/to/job/runs/{run} .`). It is an
ordinary run folder: `transfer-studio evaluate runs/{run}`, `transfer-studio export runs/{run} --out
BUNDLE`, and in the app Runs -> Add run folder... adds it to the project like a local run (its curves
follow it while it still trains). See docs/distributed.md.
"""


def write_job_folder(project: Project, folder: str | os.PathLike[str], spec: JobSpec | None = None) -> JobFolder:
    """Write the job folder (see the module docstring); UserError for a folder that is not empty."""
    spec = spec or JobSpec()
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty: choose a new folder for the job")
    snap = _frozen_split(project)
    run = _name(snap)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    path = folder / PROJECT_FILE
    snap.runs = []
    snap.save(path)
    files.append(path)
    for name, text in ((LOCAL_SCRIPT, local_script(run, spec)), (SLURM_SCRIPT, slurm_script(run, spec))):
        path = folder / name
        atomic_write_text(path, text)
        path.chmod(path.stat().st_mode | 0o111)  # executable, as the mode a new file gets allows reading
        files.append(path)
    path = folder / README
    atomic_write_text(path, readme(snap, run, spec))
    files.append(path)
    return JobFolder(folder, run, tuple(files))


def command_line(job: JobFolder) -> str:
    """What the user types to start the job on one machine."""
    return f"cd {shlex.quote(str(job.folder))} && ./{LOCAL_SCRIPT}"
