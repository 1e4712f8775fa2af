"""The benchmarks still run (quick mode), so their code cannot rot between measurements."""

from __future__ import annotations

from bench import codec


def test_codec_benchmark_runs_and_reports_both_sides() -> None:
    """The codec benchmark measures the codec and the json baseline and prints a table."""
    rows, table = codec.run(quick=True)
    assert ["decode (bytes to message)", "encode (message to bytes)"] == [
        name for name, _, _ in rows
    ]
    assert all(ours > 0 and baseline > 0 for _, ours, baseline in rows)
    assert "| codec / json |" in table
