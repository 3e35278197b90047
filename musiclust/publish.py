"""Train and publish: one preparation, every requested model, the baselines, the report, the saves.

What ``python -m musiclust train`` (and so the app's retrain, which runs it as a child process)
calls. A model that cannot train on this collection (skipped: e.g. a label-conditioned model on
tracks without groups) or that fails while training (diverged) is reported with its reason; the
models that did train are still saved, each by an atomic switch (:mod:`musiclust.serving.checkpoint`),
so a model that did not train keeps its previous version in use. A cancel saves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from musiclust.analysis.baselines import BASELINES, PRETRAINED_BASELINES
from musiclust.analysis.evaluation import baseline_row, model_row
from musiclust.errors import DataError, TrainingError
from musiclust.models import registry
from musiclust.pipeline import EpochFn, Settings, config_inputs, prepare, train_model
from musiclust.serving import checkpoint as ckpt
from musiclust.serving.bundle import ModelBundle
from musiclust.store.table import TrackTable

TRAINED, SKIPPED, FAILED = "trained", "skipped", "failed"
REPORT = "evaluation"  # the report the metrics page reads, beside the checkpoints


@dataclass
class ModelOutcome:
    """What became of one requested model."""

    name: str
    status: str  # TRAINED, SKIPPED (cannot train on this collection: not tried) or FAILED (tried)
    reason: str = ""  # why it was skipped or failed
    note: str = ""  # trained, but not quite what its description says (e.g. no lyrics to read)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class PublishReport:
    """The outcome of a train-and-publish run, in training order."""

    root: Path
    k_choice: dict  # {"k", "source", ...}: see musiclust.pipeline.prepare
    models: list[ModelOutcome]
    rows: list[dict]  # this run's report rows (baselines and trained models), as saved for the metrics page

    @property
    def k(self) -> int:
        return int(self.k_choice["k"])

    @property
    def trained(self) -> list[str]:
        return [m.name for m in self.models if m.status == TRAINED]

    @property
    def not_trained(self) -> dict[str, str]:
        """Model name -> ``"skipped: why"`` or ``"failed: why"``."""
        return {m.name: f"{m.status}: {m.reason}" for m in self.models if m.status != TRAINED}

    def summary(self) -> str:
        """One line for a person: ``"4 of 5 trained; beta_cvae skipped: …"``."""
        head = f"{len(self.trained)} of {len(self.models)} trained"
        return "; ".join([head, *(f"{name} {why}" for name, why in self.not_trained.items())])


def train_and_publish(
    table: TrackTable,
    names: list[str],
    settings: Settings,
    root: Path,
    data: str,
    on_model: Optional[Callable[[int, str], None]] = None,
    progress: Optional[EpochFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    save_each: bool = False,
) -> PublishReport:
    """Prepare ``table`` once, train each of ``names``, score the baselines, save what trained.

    ``root`` is the data set's checkpoint folder and ``data`` the spec it was loaded from (kept in
    each model's manifest). ``on_model(index, name)`` is called before each model that is tried.
    Raises :class:`~musiclust.errors.TrainingCancelled` when ``should_stop`` turns true: nothing is
    saved, except with ``save_each`` (the first run's build), where each model is saved as soon as it
    trained so the app can serve it while the next one trains. With no model trained nothing is saved
    and the report says why for each.
    """
    order = registry.training_order(names)
    prep = prepare(table, settings)
    inputs = config_inputs(prep)
    outcomes: list[ModelOutcome] = []
    bundles: dict[str, ModelBundle] = {}
    fingerprint = table.fingerprint()

    def save(name: str, bundle: ModelBundle) -> None:
        bundle.meta.update(data=data, data_fingerprint=fingerprint)
        ckpt.save(root, name, bundle.to_checkpoint())

    for index, name in enumerate(order):
        spec = registry.spec(name)
        reason = spec.skip_reason(inputs)
        if reason is not None:
            outcomes.append(ModelOutcome(name, SKIPPED, reason))
            continue
        if on_model is not None:
            on_model(index, name)
        try:
            bundle = train_model(name, prep, progress, should_stop, reuse=bundles.get(spec.reuses))
        except (DataError, TrainingError) as exc:  # this model only; TrainingCancelled stops the run
            outcomes.append(ModelOutcome(name, FAILED, str(exc)))
            continue
        bundles[name] = bundle
        if save_each:
            save(name, bundle)
        outcomes.append(ModelOutcome(name, TRAINED, note=bundle.meta.get("note") or "", metrics=bundle.meta["metrics"],
                                     seconds=bundle.meta["seconds_total"]))
    baselines = [b for b in BASELINES if prep.pretrained is not None or b not in PRETRAINED_BASELINES]
    rows = [baseline_row(name, prep) for name in baselines] + [model_row(b, prep) for b in bundles.values()]
    report = PublishReport(Path(root), prep.k_choice, outcomes, rows)
    if bundles:
        for name, bundle in bundles.items() if not save_each else ():
            save(name, bundle)
        saved = {"seeds": 1, "settings": settings.__dict__, "k_choice": prep.k_choice, "rows": rows}
        ckpt.save_report(root, REPORT, merge_report(ckpt.load_report(root, REPORT), saved))
    return report


def merge_report(old: Optional[dict], new: dict) -> dict:
    """This run's rows (its models and the baselines) plus the old report's rows of the models it did
    not train, so retraining one model keeps the others' scores on the metrics page."""
    if not old:
        return new
    trained = {r["model"] for r in new["rows"]}
    return {**new, "rows": new["rows"] + [r for r in old.get("rows", []) if r.get("model") not in trained]}
