"""Row locks that serialise writers must not block the foreign-key checks of others.

On PostgreSQL a plain ``SELECT … FOR UPDATE`` (and one with ``select_related``, which
locks the joined user row too) blocks every insert that references the locked row
until the locker commits. A batch feeder holding its batch (and, before, its owner's
user row) while it waits for the quota counters, and a job settling (holding those
counters, and inserting rows that reference the user), then wait on each other: a
deadlock, and a batch row that fails "the image arrived but could not be saved".
"""

import threading

import pytest
from django.db import OperationalError, connection, transaction

from generations import batches
from generations.models import Batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_broker")]

SETTINGS = {"model": "sandbox", "aspect_ratio": "1:1", "image_size": "1K", "count": 1}


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer and no row locks")


def test_a_batch_feeder_leaves_inserts_that_reference_its_owner_and_batch_free(
    client, alice, sandbox_model, postgres_only, monkeypatch
):
    alice.max_concurrent_jobs = 1
    alice.save()
    client.force_login(alice)
    client.post("/batches/start", {**SETTINGS, "prompts": "a\nb"}, HTTP_HX_REQUEST="true")
    batch = Batch.objects.get()
    assert len(batch.waiting) == 1

    holding, release = threading.Event(), threading.Event()
    admit = batches._admit

    def slow_admit(*args, **kwargs):  # the feeder holds its locks here
        holding.set()
        release.wait(30)
        return admit(*args, **kwargs)

    monkeypatch.setattr(batches, "_admit", slow_admit)
    feeder = threading.Thread(target=lambda: (batches.feed(batch.pk), connection.close()))
    feeder.start()
    try:
        assert holding.wait(30)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '3s'")
                # References to the owner (checked at commit) and to the batch.
                other = Batch.objects.create(user=alice, name="another")
                cursor.execute(
                    "SELECT 1 FROM generations_batch WHERE id = %s FOR KEY SHARE",
                    [batch.pk],
                )
        except OperationalError as exc:  # lock_timeout: the feeder's lock blocked us
            pytest.fail(f"an insert referencing the feeder's rows waited for it: {exc}")
    finally:
        release.set()
        feeder.join(30)
    assert Batch.objects.filter(pk=other.pk).exists()
