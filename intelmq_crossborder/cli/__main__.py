"""``python -m intelmq_crossborder.cli``: the same as the ``intelmq-crossborder`` command."""
import sys

from intelmq_crossborder.cli import main

sys.exit(main())
