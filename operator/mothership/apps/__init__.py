"""The App controller: ``builders`` (spec -> child manifests, pure), ``status``
(observed Deployment -> AppStatus, pure) and ``handlers`` (kopf and API I/O).

The split keeps the logic testable in milliseconds and the I/O thin enough to trust.
"""
