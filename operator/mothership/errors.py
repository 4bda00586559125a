"""What kopf should do about a failed API call: the retry decision, made in one place.

Handlers catch :class:`mothership.kube.ApiError` and raise ``classify(exc)``;
nothing else in the operator decides whether an API failure is worth retrying.
The tree, by HTTP status (``kube.ApiError.status``; 0 = never got an answer)::

    ApiError
    ├── 0    connection refused / reset / timed out ──────────── TemporaryError(delay=5)
    ├── 4xx
    │   ├── 400 BadRequest (malformed body: our bug) ─────────── PermanentError
    │   ├── 401 Unauthorized (token expired, rotating) ──────── TemporaryError(delay=5)
    │   ├── 403 Forbidden
    │   │   ├── namespace is being terminated ──────────────── TemporaryError(delay=10)
    │   │   ├── exceeded quota ─────────────────────────────── TemporaryError(delay=60)
    │   │   └── RBAC denied ───────────────────────────────── PermanentError naming the missing rule
    │   ├── 404 NotFound
    │   │   ├── the parent namespace does not exist (yet) ──── TemporaryError(delay=5)
    │   │   └── the object or its kind is gone ────────────── TemporaryError(delay=10)
    │   ├── 409 Conflict / AlreadyExists (a race; re-read) ─── TemporaryError(delay=1)
    │   ├── 410 Gone (stale resourceVersion) ───────────────── TemporaryError(delay=1)
    │   ├── 422 Invalid (the server's validation says no) ──── PermanentError with the causes
    │   └── 429 TooManyRequests ─────────────────────────────── TemporaryError(delay=Retry-After)
    └── 5xx  the server is unwell ───────────────────────────── TemporaryError(delay=Retry-After or 5)

A permanent error stops kopf's retries for this change (the next spec change
or resume tries again); a temporary one schedules a retry after ``delay``
seconds. Anything that is not an ApiError is a bug and is left to kopf's
default backoff. This module knows nothing about which child failed or why
we called: ``kube`` supplies the call, the handler supplies the context.
"""

from __future__ import annotations

import kopf

from mothership.kube import ApiError


def classify(exc: ApiError) -> kopf.PermanentError | kopf.TemporaryError:
    """The kopf error to raise for ``exc``; its message is a sentence for ``kubectl describe``."""
    status = exc.status
    where = f" in namespace {exc.namespace}" if exc.namespace else ""
    if status == 0:
        return kopf.TemporaryError(f"cannot reach the API server: {exc.message}", delay=5)
    if status == 400:
        return kopf.PermanentError(f"the API server rejected a malformed request: {exc.message}")
    if status == 401:
        return kopf.TemporaryError("the API server did not accept our credentials; retrying", delay=5)
    if status == 403:
        message = exc.message.lower()
        if "being terminated" in message or _cause(exc, "NamespaceTerminating"):
            return kopf.TemporaryError(f"namespace {exc.namespace} is being deleted; waiting", delay=10)
        if "exceeded quota" in message:
            return kopf.TemporaryError(f"quota exceeded{where}: {exc.message}", delay=60)
        return kopf.PermanentError(missing_rbac(exc))
    if status == 404:
        if exc.details.get("kind") == "namespaces":
            ns = exc.details.get("name") or exc.namespace
            return kopf.TemporaryError(f"namespace {ns} does not exist yet; waiting", delay=5)
        return kopf.TemporaryError(f"not found: {exc.message}", delay=10)
    if status in (409, 410):
        return kopf.TemporaryError(f"conflict, will re-read and retry: {exc.message}", delay=1)
    if status == 422:
        return kopf.PermanentError(f"the API server refused the object: {invalid_fields(exc)}")
    if status == 429:
        return kopf.TemporaryError("the API server asked us to slow down", delay=exc.retry_after or 5)
    if status >= 500:
        return kopf.TemporaryError(
            f"the API server failed ({status} {exc.reason}): {exc.message}", delay=exc.retry_after or 5
        )
    return kopf.PermanentError(f"unexpected API answer {status} {exc.reason}: {exc.message}")


def missing_rbac(exc: ApiError) -> str:
    """A 403 explained as the rule to add to the operator's ClusterRole (``mothership.rbac.RULES``)."""
    call = exc.call
    resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
    where = f" in namespace {exc.namespace}" if exc.namespace else ""
    return (
        f"the operator may not {call.verb} {resource}{where}: its ClusterRole needs "
        f"{{apiGroups: [{call.group!r}], resources: [{resource!r}], verbs: [{call.verb!r}]}} "
        f"(see mothership.rbac.RULES and the Helm chart). Server said: {exc.message}"
    )


def invalid_fields(exc: ApiError) -> str:
    """A 422's causes as ``field: message`` pairs, or the message when the server gave none."""
    causes = exc.details.get("causes") or []
    parts = [f"{c.get('field', '?')}: {c.get('message', '')}".strip() for c in causes]
    return "; ".join(parts) or exc.message


def _cause(exc: ApiError, reason: str) -> bool:
    return any(c.get("reason") == reason for c in exc.details.get("causes") or [])
