"""The root models that become CRDs, in the order `mothership crds` writes them."""

from __future__ import annotations

from .app import App
from .common import Resource
from .loadtest import LoadTest
from .tenant import Tenant

ALL: tuple[type[Resource], ...] = (Tenant, App, LoadTest)
