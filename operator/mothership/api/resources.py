"""The root models that become CRDs, in the order `mothership crds` writes them."""

from __future__ import annotations

from .common import Resource
from .loadtest import LoadTest

ALL: tuple[type[Resource], ...] = (LoadTest,)
