"""The operator end to end: ``mothership operator`` as a subprocess against a real API server.

The fixtures (``cluster``, ``api``, ``namespace``) come from ``tests/realcluster.py``:
one control plane (built by ``tests/controlplane``) and one operator process serve
the whole run, as a user would run them: CRDs applied from ``crds/``, the console
script started with ``--port``, running as its own user with the chart's
ClusterRole. Tests isolate themselves by namespace and talk to the API over HTTP
through ``mothership.kube.Kube``. The real Deployment, ReplicaSet and garbage
collector controllers run; no kubelet does, unless a test starts the pod runner.
"""
