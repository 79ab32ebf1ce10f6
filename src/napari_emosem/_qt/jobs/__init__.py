"""The annotator's background work: one job class per kind, run one at a time by :class:`JobRunner`."""

from .base import Done, Failed, Job, JobRunner, Step, sync_workers_default
from .explain import ExplainJob
from .finetune import FineTuneJob, Trained, TrainStep
from .load import LoadJob
from .propose import ProposeJob
from .refine import RefineJob

__all__ = [
    "Done",
    "ExplainJob",
    "Failed",
    "FineTuneJob",
    "Job",
    "JobRunner",
    "LoadJob",
    "ProposeJob",
    "RefineJob",
    "Step",
    "TrainStep",
    "Trained",
    "sync_workers_default",
]
