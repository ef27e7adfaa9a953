"""Test set-up shared by all tests.

IntelMQ's BotTestCase calls ``drop_privileges()`` and refuses to run as root
without an ``intelmq`` user; with that user present it would switch the whole
pytest process to it.  In-process bot tests need neither, so it is patched here.
Real bot processes (tests marked ``integration``) are started by intelmqctl and
do drop to the ``intelmq`` user that scripts/ensure-env.sh creates.
"""
import os
import sys
from pathlib import Path

import intelmq.lib.utils

intelmq.lib.utils.drop_privileges = lambda: True

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))  # for `from botcase import ...`

# Redis databases: IntelMQ uses 2 (pipeline), 3 (statistics) and 4 (BotTestCase cache)
# by default; our integration tests use their own so a running IntelMQ is not touched.
os.environ.setdefault("INTELMQ_TEST_REDIS_DB", "10")


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: runs real IntelMQ bot processes on Redis")
    config.addinivalue_line("markers", "amqp: needs RabbitMQ on 127.0.0.1:5672")
    config.addinivalue_line("markers", "slow: a long run (leak audit, large property runs); not in make test-fast")


import shutil
import tempfile

import pytest


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
