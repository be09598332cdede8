"""The ``scaling:`` (Ray Train) and ``sweep:`` (Ray Tune) sections of a recipe; the schema only,
no Ray: ``integrations/ray`` reads them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from seq2seq_rnn.config.base import MAX_COUNT, MAX_WORKERS, Section


class ScalingConfig(Section):
    """Data-parallel training on a Ray cluster (``seq2seq-rnn train --workers``); needs ``seq2seq_rnn[ray]``."""

    workers: int = Field(
        default=1, ge=1, le=MAX_WORKERS, description="data-parallel workers; 1 = a plain single process"
    )
    gpus_per_worker: float = Field(
        default=0.0, ge=0.0, le=64.0, description="0 = CPU workers (gloo); else NCCL on GPUs"
    )
    cpus_per_worker: float = Field(default=1.0, gt=0.0, le=1024.0)
    address: str | None = Field(default=None, description="Ray cluster to join; default: RAY_ADDRESS, else a local one")
    storage_path: str | None = Field(
        default=None, description="Ray checkpoints: a shared folder or s3://… URI for multi-node; default: RUN_DIR/ray"
    )
    max_failures: int = Field(
        default=0, ge=-1, le=MAX_COUNT, description="worker-group restarts from the last checkpoint; -1 = ∞"
    )


class SearchDomain(Section):
    """One swept value: exactly one of the keys below."""

    choice: list[Any] | None = Field(default=None, min_length=1, description="sample one of the values")
    grid: list[Any] | None = Field(default=None, min_length=1, description="every value (× num_samples)")
    uniform: list[float] | None = Field(default=None, min_length=2, max_length=2, description="[low, high]")
    loguniform: list[float] | None = Field(default=None, min_length=2, max_length=2, description="[low, high], > 0")
    randint: list[int] | None = Field(default=None, min_length=2, max_length=2, description="[low, high), integers")

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchDomain:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(type(self).model_fields)} (got {given or 'none'})")
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]}: low must be below high (got {bounds})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform: low must be > 0 (got {self.loguniform})")
        return self


class SweepSchedulerConfig(Section):
    """Trial scheduler; times count validations (``train.validate_every`` steps each)."""

    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(default=1, ge=1, le=MAX_COUNT, description="validations before ASHA may stop a trial")
    reduction_factor: float = Field(default=2.0, gt=1.0, le=100.0)
    max_t: int = Field(default=100, ge=1, le=MAX_COUNT, description="validations; ASHA's last rung")


class TrialResources(Section):
    workers: int = Field(
        default=1, ge=1, le=MAX_WORKERS, description="> 1: each trial is a data-parallel Ray Train run"
    )
    cpus_per_worker: float = Field(default=1.0, gt=0.0, le=1024.0)
    gpus_per_worker: float = Field(default=0.0, ge=0.0, le=64.0)


class SweepConfig(Section):
    """``seq2seq-rnn tune``: a search space over dotted recipe keys.

    A key may name several comma-separated paths that take the same value,
    e.g. ``model.decoder.embedding_size,model.decoder.hidden_size``.
    """

    space: dict[str, SearchDomain] = Field(min_length=1)
    num_samples: int = Field(
        default=1, ge=1, le=1_000_000, description="samples of the space (each grid point this often)"
    )
    metric: Literal["val_bleu", "val_chrf", "val_loss", "best_val_bleu"] = "val_bleu"
    mode: Literal["max", "min"] | None = Field(default=None, description="default: min for val_loss, else max")
    scheduler: SweepSchedulerConfig = Field(default_factory=SweepSchedulerConfig)
    resources: TrialResources = Field(default_factory=TrialResources)
    max_concurrent_trials: int = Field(default=0, ge=0, le=MAX_WORKERS, description="0 = as many as the cluster fits")
    max_failures: int = Field(
        default=0, ge=-1, le=MAX_COUNT, description="retries of a failed trial from its checkpoint"
    )

    @field_validator("space")
    @classmethod
    def _dotted_keys(cls, space: dict[str, SearchDomain]) -> dict[str, SearchDomain]:
        for key in space:
            for path in key.split(","):
                parts = path.strip().split(".")
                if not all(parts):
                    raise ValueError(f"{key!r}: expected dotted recipe keys such as train.optimizer.lr")
                if parts[0] in ("sweep", "scaling"):
                    raise ValueError(f"{key!r}: the sweep cannot vary its own settings (sweep.*, scaling.*)")
        return space

    @property
    def resolved_mode(self) -> str:
        return self.mode or ("min" if self.metric == "val_loss" else "max")
