"""Run the command line in-process for a test: ``run(argv, capsys) -> (status, stdout, stderr)``.

argparse's own exit counts as its status; a traceback or the CLI's last-resort "internal error"
line on stderr fails the test (docs/cli.md: the exit statuses hold on any input).
"""
from intelmq_crossborder.cli import main


def run(argv, capsys):
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return status, out, err
