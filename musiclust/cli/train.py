"""``train`` and ``first-run``: parse, call :func:`musiclust.publish.train_and_publish` or the first-run
build, print what became of each model."""

from __future__ import annotations

import sys
from pathlib import Path

from musiclust.errors import MusiclustError
from musiclust.cli.common import worker_count, model_names, settings_from, load_table


def cmd_train(args) -> int:
    """Train models and switch in the checkpoint of each one that trained (see :mod:`musiclust.publish`)."""
    from musiclust.errors import TrainingCancelled
    from musiclust.models.registry import ALL_MODELS, MODEL_NAMES
    from musiclust.publish import train_and_publish
    from musiclust.serving import checkpoint as ckpt
    from musiclust.serving.jobs import CANCELLED, FAILED, SUCCEEDED, StatusReporter
    from musiclust.service import dataset_slug

    names = model_names(args.models, ALL_MODELS, MODEL_NAMES)  # an opt-in model by name; `all` = the default ones
    root = Path(args.checkpoints) / dataset_slug(args.data)
    if args.if_missing and all(n in ckpt.available(root) for n in names):
        print(f"models present in {root}; nothing to train", file=sys.stderr)
        return 0
    reporter = None
    if args.status_file:
        reporter = StatusReporter(Path(args.status_file), Path(args.cancel_file or args.status_file + ".cancel"), args.job_id or "", sys.argv[2:], len(names))
    bar = _EpochBar() if reporter is None else None
    try:
        if reporter:
            reporter.note("reading features")
        table = load_table(args)
        report = train_and_publish(
            table, names, settings_from(args), root, args.data,
            on_model=(reporter.model_started if reporter else bar.model),
            progress=(reporter.epoch_done if reporter else bar.epoch),
            should_stop=(reporter.should_stop if reporter else None),
        )
    except TrainingCancelled as exc:
        if reporter:
            reporter.finish(CANCELLED, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except MusiclustError as exc:
        if reporter:
            reporter.finish(FAILED, f"{exc}" if "previous model" in str(exc) else f"{exc}; the previous models are still in use")
        raise
    finally:
        if bar:
            bar.close()
    _print_outcomes(report)
    summary = report.summary()
    if not report.trained:
        if reporter:
            reporter.finish(FAILED, f"{summary}; the previous models are still in use", [], report.not_trained)
        print(f"error: no model trained: {summary}", file=sys.stderr)
        return 2
    if report.not_trained:
        print(f"warning: {summary}", file=sys.stderr)
    if reporter:
        reporter.finish(SUCCEEDED, summary if report.not_trained else f"trained {', '.join(report.trained)}",
                        report.trained, report.not_trained)
    return 0


def _print_outcomes(report) -> None:
    """The run as a table on stdout: the chosen k, then one row per model (status, scores, seconds, why)."""
    from musiclust.publish import TRAINED

    print(f"k = {report.k} ({report.k_choice.get('source', '?')})")
    print(f"{'model':16s} {'status':8s} {'nmi':>6s} {'ari':>6s} {'silhouette':>10s} {'seconds':>8s}  note")
    for m in report.models:
        if m.status == TRAINED:
            nmi, ari, sil = (m.metrics.get(key, float("nan")) for key in ("nmi", "ari", "silhouette"))
            cells = f"{nmi:6.3f} {ari:6.3f} {sil:10.3f} {m.seconds:8.1f}"
        else:
            cells = f"{'-':>6s} {'-':>6s} {'-':>10s} {'-':>8s}"
        print(f"{m.name:16s} {m.status:8s} {cells}  {m.reason or m.note}")


class _EpochBar:
    """A tqdm bar per model for terminal training."""

    def __init__(self):
        self.bar = None

    def model(self, index: int, name: str) -> None:
        self.close()
        self.name = name

    def epoch(self, epoch: int, n_epochs: int, losses: dict, seconds: float) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=n_epochs, desc=self.name, unit="epoch", file=sys.stderr, disable=not sys.stderr.isatty())
        self.bar.update(epoch - self.bar.n)
        self.bar.set_postfix({k: f"{v:.1f}" for k, v in losses.items() if k in ("loss", "val_loss")})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_first_run(args) -> int:
    """Render the default set and train its missing models, each saved as soon as it trained."""
    from musiclust.errors import TrainingCancelled
    from musiclust.serving.firstrun import plan, run_first_build
    from musiclust.serving.jobs import CANCELLED, FAILED, SUCCEEDED, StatusReporter

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    todo = plan(args.variant, Path(args.checkpoints))
    reporter = None
    if args.status_file:
        reporter = StatusReporter(Path(args.status_file), Path(args.cancel_file or args.status_file + ".cancel"),
                                  args.job_id or "", sys.argv[2:], len(todo.models_missing))
        reporter.clips_rendered(todo.clips_total - todo.clips_missing, todo.clips_total)
    def on_model(index: int, name: str) -> None:
        if reporter is None:
            return say(f"training {name}")
        if index == 0:
            reporter.training(len(todo.models_missing))
        reporter.model_started(index, name)

    try:
        trained = run_first_build(
            args.variant, Path(args.checkpoints), jobs=worker_count(args.jobs), epochs=args.epochs,
            on_clips=reporter.clips_rendered if reporter else (lambda done, total: None), on_model=on_model,
            on_epoch=reporter.epoch_done if reporter else None,
            should_stop=reporter.should_stop if reporter else None,
            log=say,
        )
    except TrainingCancelled as exc:
        if reporter:
            reporter.finish(CANCELLED, str(exc))
        raise
    except MusiclustError as exc:
        if reporter:
            reporter.finish(FAILED, str(exc))
        raise
    if reporter:
        reporter.finish(SUCCEEDED, f"default set ready; trained {', '.join(trained)}" if trained else "default set ready")
    return 0
