"""One progress line per running workflow: parsed from its log, printed sparingly, the whole log kept in its file."""

from __future__ import annotations

import io
import sys
import textwrap

import pytest

from semcl_tools.bundle_run import BundleRunError, run_logged
from semcl_tools.progress import EpochStatus, WorkflowProgress, format_seconds

TRAIN_LINE = "2026-12-07 12:50:02,401 - INFO - Epoch: {epoch}/{cap}, Iter: 1/1 -- train_loss: {loss:.4f} "
EPOCH_DONE = "2026-12-07 12:50:02,683 - ignite.engine.engine.SupervisedTrainer - INFO - Epoch[{epoch}] Complete. Time taken: 00:00:00.782"
VALIDATION = "2026-12-07 12:50:02,671 - INFO - Epoch[{epoch}] Metrics -- val_mean_dice: {dice:.4f} "


def test_status_reads_epochs_losses_and_the_best_validation():
    status = EpochStatus()
    assert status.describe() == "starting" and status.seconds_left() is None
    assert not status.feed(TRAIN_LINE.format(epoch=1, cap=1200, loss=3.35))
    assert (status.epoch, status.max_epochs, status.first_epoch, status.loss) == (1, 1200, 0, 3.35)
    assert status.feed(VALIDATION.format(epoch=40, dice=0.41))
    assert status.feed(VALIDATION.format(epoch=80, dice=0.38))
    assert (status.value, status.best, status.best_epoch, status.validations) == (0.38, 0.41, 40, 2)
    status.feed(TRAIN_LINE.format(epoch=80, cap=1200, loss=0.9))
    assert status.describe() == "epoch 80/1200 | val Dice 0.380 (best 0.410 at 40)"


def test_pretraining_shows_its_embedding_metric_and_loss():
    status = EpochStatus()
    status.feed(TRAIN_LINE.format(epoch=5, cap=60, loss=2.5))
    status.feed("INFO - Epoch[5] Metrics -- embedding_knn_accuracy: 0.9800 embedding_silhouette_held_out: 0.1 ")
    assert status.describe() == "epoch 5/60 | kNN accuracy 0.980 (best 0.980 at 5) | loss 2.500"


def test_time_left_is_measured_from_the_epochs_done_in_this_process():
    status = EpochStatus(started=100.0)
    status.feed(TRAIN_LINE.format(epoch=401, cap=800, loss=1.0))  # resumed at epoch 400: one epoch done here
    status.feed(TRAIN_LINE.format(epoch=410, cap=800, loss=1.0))
    assert status.first_epoch == 400
    assert status.seconds_left(now=110.0) == pytest.approx(1.0 * 390)  # 10 epochs in 10 s, 390 to the cap


def test_without_a_terminal_at_most_one_line_per_interval():
    stream = io.StringIO()
    progress = WorkflowProgress("finetune__x", "[demo]", stream=stream, interactive=False, interval_s=3600)
    progress.feed("2026-12-07 12:50:01,217 - INFO - > early_stop_patience: 4")
    for epoch in range(1, 81):
        progress.feed(TRAIN_LINE.format(epoch=epoch, cap=1200, loss=1.0))
        progress.feed(EPOCH_DONE.format(epoch=epoch))
        if epoch % 40 == 0:
            progress.feed(VALIDATION.format(epoch=epoch, dice=epoch / 100))
    assert stream.getvalue() == ""  # nothing within the hour
    progress.interval_s = 0.0
    progress.feed(VALIDATION.format(epoch=120, dice=0.5))
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("[demo]   finetune__x: epoch 80/1200 | val Dice 0.500 (best 0.800 at 80) | ")
    assert "elapsed, at most " in line and line.endswith(" left")


def test_without_early_stopping_the_time_left_is_an_estimate_not_a_bound():
    stream = io.StringIO()
    progress = WorkflowProgress("pretrain__x", "[demo]", stream=stream, interactive=False, interval_s=0.0)
    progress.feed("INFO - > early_stop_patience: 0")
    progress.feed(TRAIN_LINE.format(epoch=5, cap=60, loss=2.0))
    assert ", about " in stream.getvalue() and "at most" not in stream.getvalue()


def test_format_seconds():
    assert [format_seconds(s) for s in (7, 75, 3725)] == ["7s", "1m15s", "1h02m"]


def _fake_workflow(tmp_path, epochs: int, exit_code: int = 0) -> list[str]:
    script = tmp_path / "fake_workflow.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        for epoch in range(1, {epochs} + 1):
            print({TRAIN_LINE!r}.format(epoch=epoch, cap={epochs}, loss=1.0 / epoch))
            print({EPOCH_DONE!r}.format(epoch=epoch))
            if epoch % 10 == 0:
                print({VALIDATION!r}.format(epoch=epoch, dice=epoch / {epochs}))
        print("ValueError: the last line names the cause" if {exit_code} else "done")
        sys.exit({exit_code})
    """))
    return [sys.executable, str(script)]


def test_run_logged_prints_progress_not_the_per_epoch_lines(tmp_path, capsys):
    log = tmp_path / "logs" / "fake.log"
    result = run_logged("fake", _fake_workflow(tmp_path, epochs=50), log, prefix="[t]")
    out = capsys.readouterr().out
    assert "Complete. Time taken" not in out and "Metrics --" not in out and "Epoch: " not in out
    assert len(out.splitlines()) <= 3  # the command, at most one progress line in this short run, the end
    assert "[t]   fake done in " in out and "(epoch 50/50 | val Dice 1.000 (best 1.000 at 50))" in out
    written = log.read_text(encoding="utf-8")
    assert written.count("Complete. Time taken") == 50 and written.count("Metrics --") == 5  # the whole log kept
    assert result.seconds > 0


def test_run_logged_failure_names_the_log_and_the_cause(tmp_path, capsys):
    with pytest.raises(BundleRunError, match="the last line names the cause") as error:
        run_logged("fake", _fake_workflow(tmp_path, epochs=3, exit_code=2), tmp_path / "fake.log", prefix="[t]")
    assert "exit 2" in str(error.value) and str(tmp_path / "fake.log") in str(error.value)
