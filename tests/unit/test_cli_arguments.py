"""How the command line's options combine (the commands themselves run in tests/functional)."""

import pytest

from rpcmm import cli


REGISTRY = ["registry", "--seed", "s.json", "--endpoint", "h:1"]


@pytest.mark.parametrize("argv, level", [
    (["check-seed", "s.json"], "warning"),  # the command's default
    (REGISTRY, "info"),  # another command's default
    (["--log-level", "debug", "check-seed", "s.json"], "debug"),  # before the command
    (["check-seed", "s.json", "--log-level", "error"], "error"),  # after it
    (["--log-level", "debug", *REGISTRY, "--log-level", "error"], "error"),  # after wins
    (["--log-level", "info", "keys", "generate", "d", "n"], "info"),
    (["keys", "generate", "d", "n"], "warning"),
])
def test_the_log_level_comes_from_the_command_then_before_it_then_the_default(argv, level):
    assert cli._log_level(cli._parser().parse_args(argv)) == level


def test_an_unknown_log_level_before_the_command_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["--log-level", "loud", "check-seed", "s.json"])
    assert "invalid choice: 'loud'" in capsys.readouterr().err
