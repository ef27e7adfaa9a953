"""Test set-up shared by all tests.

``tests`` is a package: test modules import their support as ``from tests.botcase import ...``
(pytest puts the repository root, the first folder above ``tests/__init__.py``, on ``sys.path``).

IntelMQ's BotTestCase calls ``drop_privileges()`` and refuses to run as root
without an ``intelmq`` user; with that user present it would switch the whole
pytest process to it.  In-process bot tests need neither, so it is patched here.
Real bot processes (tests marked ``integration``) are started by intelmqctl and
do drop to the ``intelmq`` user that scripts/ensure-env.sh creates.
"""
import shutil
import tempfile
from pathlib import Path

import intelmq.lib.utils
import pytest

intelmq.lib.utils.drop_privileges = lambda: True


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: runs real IntelMQ bot processes on Redis")
    config.addinivalue_line("markers", "amqp: needs RabbitMQ on 127.0.0.1:5672")
    config.addinivalue_line("markers", "slow: a long run (leak audit, large property runs); not in make test-fast")


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
