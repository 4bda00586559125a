"""``python -m mothership`` is ``mothership``: workers are spawned this way."""

from mothership.cli import main

main()
