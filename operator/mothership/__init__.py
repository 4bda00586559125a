"""Mothership: a Kubernetes operator for multitenant apps and the distributed
HTTP + WebSocket load tests that prove them.

Layers (enforced by the import-linter contract in pyproject.toml):
``cli`` -> ``apps | tenants | loadtests`` -> ``loadgen`` -> ``api``.
"""

__version__ = "0.1.0"
