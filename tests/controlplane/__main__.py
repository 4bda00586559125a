"""``python -m tests.controlplane build | up DIR``: see the package docstring."""

import sys

from tests.controlplane import main

sys.exit(main(sys.argv[1:]))
