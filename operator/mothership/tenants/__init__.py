"""The Tenant controller: ``builders`` (spec -> Namespace and guard rails, pure),
``status`` (apply results and quota usage -> TenantStatus, pure) and ``handlers``
(kopf and API I/O).

The split keeps the logic testable in milliseconds and the I/O thin enough to trust.
"""
