"""``python -m reference_server`` options that shape the server's configuration."""

from __future__ import annotations

import time

import pytest

from reference_server.__main__ import _parser, config_from, main
from reference_server.app import ReferenceServer


def test_clock_offset_starts_the_virtual_clock_ahead_of_the_wall_clock() -> None:
    config = config_from(_parser().parse_args(["--virtual-clock", "--clock-offset", "120.5"]))
    assert 120.5 == config.clock_offset_s
    server = ReferenceServer(config)
    assert 120.5 == pytest.approx(server.clock.now() - time.time(), abs=1.0)


@pytest.mark.parametrize(
    "argv", [["--clock-offset", "5"], ["--virtual-clock", "--clock-offset", "-1"]]
)
def test_clock_offset_without_a_virtual_clock_or_negative_is_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert 2 == exit_.value.code
    assert "--clock-offset needs --virtual-clock" in capsys.readouterr().err
