"""A client that gives up does not cancel what it paid for."""

import httpx
import pytest

from accounts import quotas
from generations.models import Generation
from tests.factories import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def sandbox_url():
    """The upstream takes two seconds, longer than the impatient client below waits."""
    from generations.sandbox.server import SandboxConfig, running_sandbox

    with running_sandbox(SandboxConfig(latency_min=2.0, latency_max=2.0)) as url:
        yield url


def test_a_disconnected_client_still_gets_its_image_in_the_gallery(api_server, alice, alice_token):
    auth = {"Authorization": f"Bearer {alice_token}"}
    # A warm server admits the job well before the client gives up (a client that hangs
    # up before admission is simply not charged).
    assert httpx.get(f"{api_server}/v1/models", headers=auth, timeout=30).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{api_server}/v1/images/generations",
            timeout=1.2,
            headers=auth,
            json={"model": "sandbox", "prompt": "a lighthouse, impatiently"},
        )

    wait_for(
        lambda: Generation.objects.exclude(status__in=["queued", "running"]).exists(),
        timeout=60,
        message="the job the client gave up on never finished",
    )
    gen = Generation.objects.get()
    assert gen.status == Generation.SUCCEEDED and gen.source == "api"
    assert gen.image.file.size > 0  # stored, so the gallery shows it
    summary = quotas.summary(alice)
    assert summary.images_today == 1 and summary.reserved_month == 0
    assert summary.spent_month == gen.actual_micros > 0
