"""``bench.instructions``: its table, and what it says without valgrind."""

from __future__ import annotations

import pytest

from bench import instructions


def test_the_table_puts_each_count_beside_the_echo() -> None:
    text = instructions.table([("echo", 200_000, 100_000), ("ours", 400_000, 125_000)])
    assert "| ours | 400,000 | 0.500x | 125,000 | 0.800x |" in text
    assert "| echo | 200,000 | 1.000x | 100,000 | 1.000x |" in text


def test_without_valgrind_it_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda name: None)
    assert instructions.main([]) == 2
    assert "apt-get install valgrind" in capsys.readouterr().err
