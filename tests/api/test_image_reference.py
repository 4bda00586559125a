"""``App.spec.image`` follows the image-reference grammar: what registries serve passes, the rest fails.

The same pattern is in the CRD (kubectl refuses at apply) and in the model (``mothership app
deploy --image`` refuses before anything is applied), so a reference the kubelet would call
InvalidImageName never reaches a pod.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mothership.api.app import AppSpec

VALID = [
    "nginx", "nginx:1.27-alpine", "docker.io/library/nginx:latest", "localhost:5000/team/app",
    "registry.example.com:443/team/app_name:v1.2.3", "ghcr.io/acme/shop@sha256:" + "a" * 64,
    "ghcr.io/acme/shop:1.4.2@sha256:" + "0f" * 32, "quay.io/a.b-c/d__e/f.g-h:TAG_1", "192.168.1.10:5000/x",
    "Registry.Example.com/app",
]
INVALID = [
    "ghcr.io/Acme/Shop:1.0", "shop:", "shop:1.0 ", "-shop", "shop/", "shop@sha256:abc", "shop:" + "x" * 129,
    "shop::1", "https://ghcr.io/acme/shop",
]


@pytest.mark.parametrize("image", VALID)
def test_references_registries_serve_are_accepted(image: str) -> None:
    assert AppSpec.model_validate({"image": image}).image == image


@pytest.mark.parametrize("image", INVALID)
def test_what_the_kubelet_would_refuse_is_refused(image: str) -> None:
    with pytest.raises(ValidationError, match="image"):
        AppSpec.model_validate({"image": image})
