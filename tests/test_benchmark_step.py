"""The step-cost micro-benchmark (``scripts/benchmark_step.py``): arms timed interleaved, ratios to ``seg``."""

from __future__ import annotations

import json

import pytest

from semcl_benchmark.step import DEFAULT_ARMS, _parser, main


def test_channels_last_arm_is_named_not_default():
    assert "seg_channels_last" not in DEFAULT_ARMS
    assert _parser().parse_args([]).arms == list(DEFAULT_ARMS)


@pytest.mark.slow
def test_channels_last_step_against_the_plain_segmentation_step(tmp_path, capsys):
    out = tmp_path / "step.json"
    assert main(["--size", "16", "--views", "2", "--repeats", "2", "--warmup", "1", "--threads", "1",
                 "--init-filters", "8", "--arms", "seg", "seg_channels_last", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    seg, channels_last = report["arms"]["seg"], report["arms"]["seg_channels_last"]
    assert len(seg["times_s"]) == len(channels_last["times_s"]) == 2
    assert report["ratios"]["seg_channels_last/seg"] == pytest.approx(channels_last["median_s"] / seg["median_s"])
    # the same network either way: the same parameter count, memory measured in a child process of its own
    assert seg["num_parameters"] == channels_last["num_parameters"] and channels_last["peak_rss_mb"] > 0
    assert "seg_channels_last" in capsys.readouterr().out
