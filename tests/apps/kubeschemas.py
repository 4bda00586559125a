"""Judge a built object by Kubernetes' own OpenAPI schemas (kubernetes-validate), strictly.

kubernetes-validate re-reads and parses its schema files on every call (~18 ms);
their contents are a pure function of (file, version), so they are read once per
run here, which makes a call ~3 ms. Tests that use this skip when the package is
not installed.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

VERSIONS = ["1.30", "latest"]
"""The oldest Kubernetes we support and the newest kubernetes-validate knows."""


def validate(manifest: dict[str, Any], version: str) -> None:
    """Raise kubernetes_validate.ValidationError unless ``manifest`` is valid in that version."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    utils = kubernetes_validate.utils
    if not hasattr(utils.schema_contents, "cache_info"):
        utils.schema_contents = functools.cache(utils.schema_contents)
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(manifest, version, strict=True)
