"""One exception hierarchy and one table from exception to exit code for every command (issue 10):
the same error gives the same code and the same one line whichever sub-command raises it."""

from __future__ import annotations

import argparse

import pytest

from skylake import errors
from skylake.allsky.cli import CameraCliError
from skylake.allsky.fit import CameraFitError
from skylake.cli import build_parser
from skylake.errors import DbError, DbUrlError, ForeignLakeError, LakeError, LakeFullError, SkylakeError
from skylake.maps.aggregate import MapsError
from skylake.profile import ProfileError
from skylake.refcat.errors import RefcatError
from skylake.runtime import SchedulerError

SECRET = "s3cr3t-pw"
CASES = [  # (exception, exit code)
    (LakeError("not a skylake lake"), 2),
    (ProfileError("bad value"), 2),
    (MapsError("nside 3"), 2),
    (RefcatError("no such catalogue"), 2),
    (SchedulerError("unreachable"), 2),
    (CameraCliError("no [camera]"), 2),
    (FileNotFoundError("no such file"), 2),
    (DbUrlError("malformed"), 2),
    (ForeignLakeError("another lake"), 2),
    (LakeFullError("no space left"), 1),
    (CameraFitError("too few stars"), 4),
    (DbError(f"cannot reach postgresql+psycopg://u:{SECRET}@host/db:\n connection refused"), 5),
]


def _commands() -> dict[str, object]:
    """Every sub-command's function, by its full name (``refcat import``, ``maps``, ...)."""
    out = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    func = sub.get_default("func")
                    if func is not None:
                        out[f"{prefix}{name}"] = func
                    walk(sub, f"{prefix}{name} ")

    walk(build_parser(), "")
    return out


def test_every_error_class_says_its_code_and_is_a_skylake_error():
    for exc, code in CASES:
        assert errors.exit_code(exc) == code, type(exc).__name__
        assert isinstance(exc, SkylakeError | FileNotFoundError)
    assert errors.exit_code(RuntimeError("a bug")) == 1 and errors.exit_code(KeyboardInterrupt()) == 130


@pytest.mark.parametrize("exc,code", CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_the_command_wrapper_reports_each_error_by_the_table(exc, code, capsys):
    """One line, the table's code, any password masked."""

    def boom(args):
        raise exc

    assert errors.command(boom)(argparse.Namespace()) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("skylake: error: ") and SECRET not in err


def test_every_command_reports_through_the_one_wrapper_or_main():
    """No sub-command has an error mapper of its own (a DbError under ``refcat`` once became 2): each is
    wrapped by :func:`skylake.errors.command` or left to :func:`skylake.cli.main`, which uses the same table."""
    commands = _commands()
    assert {
        "ingest",
        "calibrate",
        "maps",
        "refcat import",
        "objects build",
        "lightcurve",
        "camera fit",
        "refresh",
        "status",
    } <= set(commands)
    one = errors.command(lambda args: 0).__code__
    for name, func in commands.items():
        if hasattr(func, "__wrapped__"):
            assert func.__code__ is one, f"{name} has its own error wrapper"


def test_main_reports_through_the_same_table(tmp_path, capsys, monkeypatch):
    """skylake.cli.main: a DbError from refresh exits 5, one line, the password masked."""
    from skylake import cli

    def refresh_fails(args):
        raise DbError(f"refresh of postgresql+psycopg://u:{SECRET}@127.0.0.1:1/x failed:\n refused")

    parser = build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["refresh"].set_defaults(func=refresh_fails)
    assert cli.main(["refresh", str(tmp_path)]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("skylake: error: refresh of postgresql") and SECRET not in err


@pytest.mark.parametrize(
    "command",
    [["calibrate"], ["ensemble"], ["maps"], ["plot", "noise"], ["coadd"], ["ensemble", "--since"], ["maps", "--until"]],
    ids=" ".join,
)
def test_a_night_that_is_no_date_is_the_same_usage_error_in_every_command(command, tmp_path):
    """One frames selector (skylake.lake.frames) checks every command's dates: ``ensemble --night 2024/01/01``
    once printed "0 of 0 frames solved" and exited 0 where calibrate refused the date."""
    from conftest import run_cli

    lake = tmp_path / "lake"
    run_cli("init", str(lake), check=True)
    option = command[-1] if command[-1].startswith("--") else "--night"
    words = [w for w in command if not w.startswith("--")]
    out = run_cli(*words, str(lake), option, "2024/01/01")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == f"skylake: error: {option} must be a date YYYY-MM-DD, got '2024/01/01'"
    assert out.stdout == ""


def test_the_frames_selector_refuses_a_bad_date_and_a_backward_range():
    from skylake.errors import NightError, UsageError
    from skylake.lake.frames import FrameSelection

    with pytest.raises(NightError, match=r"--since must be a date YYYY-MM-DD, got '2024-1-1'"):
        FrameSelection(since="2024-1-1")
    with pytest.raises(UsageError, match="--since 2024-02-01 is after --until 2024-01-01"):
        FrameSelection(since="2024-02-01", until="2024-01-01")
    assert FrameSelection(nights=["2024-01-01"]).nights == ("2024-01-01",)
