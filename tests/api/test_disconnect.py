"""A client that gives up does not cancel what it paid for."""

import time

import httpx
import pytest

from accounts import quotas
from generations.models import Generation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def sandbox_url():
    """The upstream takes two seconds, longer than the impatient client below waits."""
    from generations.sandbox.server import SandboxConfig, running_sandbox

    with running_sandbox(SandboxConfig(latency_min=2.0, latency_max=2.0)) as url:
        yield url


def test_a_disconnected_client_still_gets_its_image_in_the_gallery(api_server, alice,
                                                                    alice_token):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{api_server}/v1/images/generations", timeout=0.8,
                   headers={"Authorization": f"Bearer {alice_token}"},
                   json={"model": "sandbox", "prompt": "a lighthouse, impatiently"})

    deadline = time.monotonic() + 30
    while Generation.objects.in_flight().exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    gen = Generation.objects.get()
    assert gen.status == Generation.SUCCEEDED and gen.source == "api"
    assert gen.image.file.size > 0  # stored, so the gallery shows it
    summary = quotas.summary(alice)
    assert summary.images_today == 1 and summary.reserved_month == 0
    assert summary.spent_month == gen.actual_micros > 0
