"""What only a real API server can judge: CRD validation, admission, the real controllers.

The fixtures (``cluster``, ``api``, ``namespace``) come from ``tests/realcluster.py``:
the built control plane by default, or ``$KUBECONFIG`` with ``pytest -m cluster``.
The operator's scenarios in tests/operator and tests/loadtests run there too.
"""
