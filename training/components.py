"""torchx component: MOFI training as a DDP job (torchrun), locally or on Kubernetes (Volcano).

Examples::

    # two processes on this machine (gloo), settings from the MOFI_* environment
    torchx run -s local_cwd training/components.py:train -j 1x2 -- \\
        --snapshot s3://mofi-i2e/snapshots/<version>/manifest.json --run-name dev --model mofi-tiny-vit

    # print the Volcano job for a cluster without submitting it
    torchx run --dryrun -s kubernetes -cfg queue=default training/components.py:train \\
        --image registry/mofi:0.1.0 -j 2x4 --gpu 4 -- --snapshot ... --run-name prod --model mofi-vit-b16

Why a pass-through of ``mofi train`` arguments: the trainer's options live in one place
(``TrainConfig``); this component only decides where and how many processes run them. From
Python, ``config_argv(cfg)`` (``mofi_platform.training.config``) gives the arguments of a config.
``max_retries`` lets the scheduler restart a failed job, which then resumes from its last checkpoint.
"""

import torchx.specs as specs
from torchx.components import dist

from mofi import IMAGE

__all__ = ["train"]


def train(
    *train_args: str,
    image: str = IMAGE,
    j: str = "1x2",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 4096,
    h: str | None = None,
    env: dict[str, str] | None = None,
    max_retries: int = 0,
    name: str = "mofi-train",
) -> specs.AppDef:
    """Train MOFI with DDP: ``j`` nodes x processes, each running ``mofi train <train_args>``.

    Args:
        train_args: arguments of ``mofi train`` (see ``mofi train --help``), e.g. --snapshot URI --run-name NAME
        image: container image with the mofi-platform package (ignored by local_cwd, which runs in this checkout)
        j: {nnodes}x{nproc_per_node}, e.g. 1x2 for two processes on one host
        cpu: CPUs per replica
        gpu: GPUs per replica (NCCL is used when CUDA is available, gloo otherwise)
        memMB: memory per replica in MB
        h: a registered named resource (overrides cpu/gpu/memMB)
        env: extra environment, e.g. MOFI_S3_ENDPOINT=minio:9000 (MOFI_* variables carry the settings)
        max_retries: scheduler restarts allowed; a restarted job resumes from its last checkpoint
        name: job name
    """
    app = dist.torchrun(
        "train",
        *train_args,
        m="mofi.cli",
        image=image,
        name=name,
        h=h,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        j=j,
        env=env,
        max_retries=max_retries,
    )
    app.roles[0].name = "train"  # torchx names the role after the module ("cli")
    return app
