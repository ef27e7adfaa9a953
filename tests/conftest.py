"""Test set-up shared by all tests.

``tests`` is a package: test modules import their support as ``from tests.botcase import ...``
(pytest puts the repository root, the first folder above ``tests/__init__.py``, on ``sys.path``).

IntelMQ's BotTestCase calls ``drop_privileges()`` and refuses to run as root
without an ``intelmq`` user; with that user present it would switch the whole
pytest process to it.  In-process bot tests need neither, so it is patched here.
Real bot processes (tests marked ``integration``) are started by intelmqctl and
do drop to the ``intelmq`` user that scripts/ensure-env.sh creates.

A run claims its own Redis database and RabbitMQ queue prefix when a test first needs them
(tests/isolation.py) and gives them back at the end.
"""
import shutil
import tempfile
from pathlib import Path

import intelmq.lib.utils
import pytest

from tests import isolation

intelmq.lib.utils.drop_privileges = lambda: True


def pytest_terminal_summary(terminalreporter):
    if isolation.header():
        terminalreporter.write_line(isolation.header())


def pytest_unconfigure(config):
    isolation.release()


@pytest.fixture(scope="module")
def consortium_dbs():
    """Four distinct Redis databases (one per hub of the consortium) for the tests of a module."""
    with isolation.redis_dbs(4) as dbs:
        yield dbs


@pytest.fixture
def intelmq_workdir():
    """A scratch directory that real bot processes can use.

    pytest's ``tmp_path`` lives under a 0700 directory of root, which the
    ``intelmq`` user (that bots drop to when started by root) cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix="intelmq-crossborder-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
