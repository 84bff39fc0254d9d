"""The MOFI training pipeline (KFP v2): snapshot -> train (torchx) -> evaluate -> index -> roll.

Evaluation gates the rest: a model that does not beat the gate's references (``gate``: the frozen
baseline and the published model by default, by more than ``min_gain``; ``min_map`` an absolute
floor) is neither indexed nor rolled, and the run fails with the numbers (``gate-failed``), which
stay in the evaluate step's Metrics.

``build_pipeline(image)`` returns the pipeline function; :data:`PIPELINE_FILE` is its compiled
form, committed and checked fresh by the tests (``mofi pipeline compile`` rewrites it). In a
cluster every step gets the settings from the chart's ConfigMap and credentials from its Secret
(names are run parameters); a local run (``mofi pipeline run``, kfp.local) inherits them from the
environment instead and trains with torchx's ``local_cwd`` scheduler.

No ``from __future__ import annotations``: KFP reads parameter types from real annotations.
"""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes as k8s
from kfp.dsl import Artifact, Metrics, Model

from mofi import IMAGE
from mofi.settings import CREDENTIALS, LOCAL_ONLY_SECTIONS, Settings, env_name, iter_fields
from mofi_platform.pipelines.components import make_components

__all__ = [
    "PIPELINE_NAME",
    "PIPELINE_FILE",
    "DEFAULT_IMAGE",
    "TRAIN_RETRIES",
    "TRAIN_STEP_TIMEOUT_S",
    "build_pipeline",
    "compile_pipeline",
]

PIPELINE_NAME = "mofi-train"
PIPELINE_FILE = Path(__file__).with_name("mofi_train.yaml")
#: The image the chart deploys (Dockerfile, skaffold.yaml); `mofi pipeline compile --image` changes it.
DEFAULT_IMAGE = IMAGE


#: Step resources: training runs in its own torchx job, so steps only need room for one model.
STEP_CPU, STEP_MEMORY = "2", "8G"

#: Model and recipe default to the training settings (as for `mofi train`); steps, batch size and
#: the job's shape below are a cluster run's (one GPU per process), larger than `mofi train`'s.
_TRAINING = Settings().training

#: The training step may be retried (a new pod, e.g. after an eviction): the retry cancels a job an earlier
#: attempt left running and resumes the run from its last checkpoint (``steps.launch_training``).
TRAIN_RETRIES, TRAIN_RETRY_BACKOFF = 2, "120s"
#: The training step's pod deadline: the job's own deadlines (settings ``training.job_start_timeout_s`` and
#: ``training.job_timeout_s``, defaults) plus room for the step itself; past it Kubernetes stops the pod
#: (SIGTERM), and the step cancels its job.
TRAIN_STEP_TIMEOUT_S = int(_TRAINING.job_start_timeout_s + _TRAINING.job_timeout_s) + 1800


def _settings_env() -> dict[str, str]:
    """ConfigMap key -> environment variable for every non-credential setting (the keys are the names)."""
    secret = {env_name(section, field) for section, field in CREDENTIALS}
    return {
        env_name(s, f): env_name(s, f)
        for s, f, _, _ in iter_fields(Settings())
        if s not in LOCAL_ONLY_SECTIONS and env_name(s, f) not in secret
    }


def _with_settings(task: dsl.PipelineTask, config_map, secret, cluster: bool) -> dsl.PipelineTask:
    task.set_caching_options(False)  # every step reads or writes the object store: never reuse a cached result
    task.set_cpu_request(STEP_CPU).set_memory_request(STEP_MEMORY).set_memory_limit(STEP_MEMORY)
    if cluster:
        k8s.use_config_map_as_env(task, config_map, _settings_env())
        for optional in (False, True):
            keys = {c.secret_key: env_name(s, f) for (s, f), c in CREDENTIALS.items() if c.optional == optional}
            k8s.use_secret_as_env(task, secret, keys, optional=optional)
    return task


def build_pipeline(image: str = DEFAULT_IMAGE, cluster: bool = True) -> Callable:
    """The pipeline function; ``cluster=False`` leaves out the ConfigMap/Secret wiring (kfp.local runs)."""
    ops = make_components(image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "MOFI on the I2E dataset: freeze a snapshot, train with torchx (Volcano), gate on retrieval mAP against "
            "the frozen baseline and the published model, index the images into Milvus behind the search alias, "
            "optionally roll the embedder."
        ),
    )
    def mofi_train(
        snapshot_version: str = "",
        min_count: int = 3,
        val_percent: float = 5.0,
        run_name: str = "",
        model_config: str = _TRAINING.model,
        recipe: str = _TRAINING.recipe,
        steps: int = 2000,
        batch_size: int = 64,
        train_options: str = "{}",
        scheduler: str = "kubernetes",
        nnodes: int = 1,
        nproc_per_node: int = 1,
        image: str = image,
        gpu: int = 1,
        cpu: int = 8,
        mem_mb: int = 32768,
        queue: str = "default",
        max_retries: int = 2,
        benchmark: str = "s3://mofi-corpus/benchmark/",
        gate: str = "baseline,published",
        min_gain: float = 0.0,
        min_map: float = 0.0,
        index_batch_size: int = 64,
        thumbnails: bool = True,
        roll: bool = False,
        embedder_deployment: str = "mofi-embedder",
        namespace: str = "",
        settings_config_map: str = "mofi-settings",
        credentials_secret: str = "mofi-credentials",
    ) -> NamedTuple("Outputs", model=Model, metrics=Metrics, evaluation=Artifact):
        """Args are run parameters in the Kubeflow UI.

        train_options is a JSON object of further `mofi train` options (loss: class_weight, cosface_scale,
        cosface_margin, temperature, learn_temperature, entity_text; see `mofi train --help`).
        gate: comma-separated references the model must beat by more than min_gain (baseline, published,
        chance), or none; min_map: an absolute floor.
        """

        def wired(task: dsl.PipelineTask) -> dsl.PipelineTask:
            return _with_settings(task, settings_config_map, credentials_secret, cluster)

        snap = wired(ops["snapshot_i2e"](version=snapshot_version, min_count=min_count, val_percent=val_percent))
        snap.set_display_name("snapshot I2E")
        train = wired(
            ops["train_mofi"](
                dataset=snap.outputs["dataset"],
                run_name=run_name,
                model_config=model_config,
                recipe=recipe,
                steps=steps,
                batch_size=batch_size,
                train_options=train_options,
                scheduler=scheduler,
                nnodes=nnodes,
                nproc_per_node=nproc_per_node,
                image=image,
                gpu=gpu,
                cpu=cpu,
                mem_mb=mem_mb,
                queue=queue,
                credentials_secret=credentials_secret,
                max_retries=max_retries,
            )
        )
        train.set_display_name("train (torchx)")
        train.set_retry(TRAIN_RETRIES, backoff_duration=TRAIN_RETRY_BACKOFF, backoff_factor=2.0)
        k8s.set_timeout(train, TRAIN_STEP_TIMEOUT_S)
        evaluate = wired(
            ops["evaluate_mofi"](
                model=train.outputs["model"], benchmark=benchmark, gate=gate, min_gain=min_gain, min_map=min_map
            )
        )
        evaluate.set_display_name("evaluate")
        passed = evaluate.outputs["Output"]  # the gate's verdict
        with dsl.If(passed == True, "gate passed"):  # noqa: E712 (a pipeline condition)
            index = wired(
                ops["index_milvus"](model=train.outputs["model"], batch_size=index_batch_size, thumbnails=thumbnails)
            )
            index.set_display_name("index into Milvus")
            with dsl.If(roll == True, "roll"):  # noqa: E712
                rolled = wired(
                    ops["roll_embedder"](
                        model=train.outputs["model"], deployment=embedder_deployment, namespace=namespace
                    )
                )
                rolled.set_display_name("roll embedder").after(index)
        with dsl.If(passed == False, "gate failed"):  # noqa: E712
            wired(ops["gate_failed"](results=evaluate.outputs["results"])).set_display_name("quality gate failed")
        outputs = NamedTuple("Outputs", model=Model, metrics=Metrics, evaluation=Artifact)  # noqa: UP014 (as annotated)
        return outputs(
            model=train.outputs["model"], metrics=evaluate.outputs["metrics"], evaluation=evaluate.outputs["results"]
        )

    return mofi_train


def compile_pipeline(path: str | Path = PIPELINE_FILE, image: str = DEFAULT_IMAGE) -> Path:
    compiler.Compiler().compile(build_pipeline(image), str(path))
    return Path(path)
