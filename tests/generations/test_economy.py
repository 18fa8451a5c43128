"""Economy batches through the sandbox's Gemini Batch API: one upstream job, each row
settled at the Batch price, per-row failures refunded, file input over the inline
limit, expiry, cancel and a submit lost with its worker (each test drives the task's
body by hand, as Celery would)."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from accounts import quotas
from accounts.models import LedgerEntry
from generations import batches, economy, engine, pricing, queue
from generations.failures import ErrorKind
from generations.models import Generation, Price, Route
from generations.models.jobs import UpstreamBatch
from generations.providers import gemini_batch
from generations.providers.base import ImageRequest, Usage

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def sent(monkeypatch):
    """Nothing reaches a broker: the economy task and job messages are recorded."""
    messages: list = []
    monkeypatch.setattr(queue, "enqueue", lambda ids, **kw: None)
    monkeypatch.setattr(queue, "run_economy_batch", lambda ids, **kw: messages.extend(ids))
    return messages


@pytest.fixture
def economy_route(sandbox_model) -> Route:
    """The Sandbox model's route with a Batch price at half its standard price."""
    route = Route.objects.get(model=sandbox_model)
    assert pricing.batch_price(route) is not None  # start-up gives it one
    return route


def start(user, model, prompts: list[str], *, economy_mode=True) -> batches.Plan:
    defaults = batches.Defaults(model=model, aspect_ratio="1:1", image_size="1K")
    plan = batches.check(user, batches.parse_lines("\n".join(prompts), defaults))
    return plan, batches.start(user, "test", plan, economy_mode=economy_mode)


def drive(batch, rounds: int = 200) -> None:
    """Run each Batch API job's steps until it finishes (no countdown waits)."""
    for _ in range(rounds):
        active = UpstreamBatch.objects.filter(batch=batch, phase__in=UpstreamBatch.ACTIVE)
        if not active.exists():
            return
        for upstream in active:
            UpstreamBatch.objects.filter(pk=upstream.pk).update(next_poll_at=timezone.now())
            economy.run(upstream.pk)
        time.sleep(0.05)
    raise AssertionError("the economy batch never finished")


def sandbox_batch(url: str) -> dict:
    return httpx.get(f"{url}/healthz", timeout=10).json().get("batch", {})


def test_twenty_rows_go_as_one_upstream_batch_settled_at_half_price(
    alice, sandbox_model, economy_route, sandbox_url, sent
):
    prompts = [f"economy lighthouse {i}" for i in range(19)] + ["a kite [sandbox:prompt_block]"]
    plan, batch = start(alice, sandbox_model, prompts)

    assert plan.economy_ok and plan.economy_micros * 2 in range(plan.micros - 40, plan.micros + 1)
    assert batch.economy and batch.upstream_batches.count() == 1
    rows = list(batch.generations.all())
    assert len(rows) == 20 and all(r.reserved_micros * 2 <= plan.micros // 10 for r in rows)
    assert all(r.status == Generation.QUEUED and r.next_attempt_at >= r.deadline for r in rows)
    drive(batch)

    health = sandbox_batch(sandbox_url)
    assert health["created"] == 1 and health["rows"] == 20 and health["inline"] == 1
    standard, half = economy_route.price_at(), pricing.batch_price(economy_route)
    made = batch.generations.filter(status=Generation.SUCCEEDED)
    assert made.count() == 19
    for gen in made:
        usage = Usage(**{k: v for k, v in gen.usage.items() if k != "upstream_cost_micros"})
        assert gen.actual_micros == pricing.route_cost(economy_route, half, usage, "1K")
        full = pricing.route_cost(economy_route, standard, usage, "1K")
        assert abs(gen.actual_micros * 2 - full) <= 1 and gen.image.file
        assert LedgerEntry.objects.filter(generation=gen, kind="settle").count() == 1
    blocked = batch.generations.get(status=Generation.FAILED)
    assert blocked.error_kind == ErrorKind.BLOCKED and blocked.refunded
    assert LedgerEntry.objects.filter(generation=blocked, kind="release").count() == 1
    s = quotas.summary(alice)
    assert s.reserved_month == 0 and s.images_today == 19
    assert quotas.ledger_problems() == []
    upstream = batch.upstream_batches.get()
    assert upstream.state == gemini_batch.SUCCEEDED and upstream.phase == "finished"


def test_a_payload_over_the_inline_limit_goes_as_a_jsonl_file(
    alice, sandbox_model, economy_route, sandbox_url, sent, settings
):
    settings.NANOWEB_ECONOMY_INLINE_BYTES = 2000
    _plan, batch = start(alice, sandbox_model, [f"a file fox {i}" for i in range(12)])
    drive(batch)

    health = sandbox_batch(sandbox_url)
    assert health["from_file"] == 1 and health["uploads"] == 1 and health["created"] == 1
    assert batch.upstream_batches.get().input_file.startswith("files/")
    assert batch.generations.filter(status=Generation.SUCCEEDED).count() == 12
    assert quotas.ledger_problems() == []


def test_an_expired_batch_refunds_its_rows_and_offers_the_rest_at_the_normal_price(
    alice, sandbox_model, economy_route, sent
):
    plan, batch = start(alice, sandbox_model, ["a hare [batch:expire]", "a hound"])
    drive(batch)

    rows = batch.generations.all()
    assert {(r.status, r.error_kind, r.refunded) for r in rows} == {("failed", "deadline", True)}
    assert "48 hours" in rows[0].error_message
    assert batch.expired_rows.count() == 2
    assert quotas.summary(alice).reserved_month == 0
    new = batches.retry_failed(alice, batch, expired_only=True)  # never done by itself
    assert len(new) == 2 and all(
        g.upstream_batch_id is None and g.batch_id == batch.pk for g in new
    )
    assert sum(g.reserved_micros for g in new) == plan.micros  # the standard price
    assert quotas.ledger_problems() == []


def test_cancel_calls_the_batch_off_at_google_and_refunds_every_row(
    alice, sandbox_model, economy_route, sandbox_url, sent
):
    _plan, batch = start(alice, sandbox_model, ["a slow owl [batch:slow]", "a slow bat"])
    upstream = batch.upstream_batches.get()
    economy.run(upstream.pk)  # submitted
    upstream.refresh_from_db()
    assert upstream.phase == "waiting" and upstream.name.startswith("batches/")

    cancelled, _dropped = batches.cancel(alice, batch)
    assert len(cancelled) == 2 and quotas.summary(alice).reserved_month == 0
    drive(batch)

    assert sandbox_batch(sandbox_url)["cancelled"] == 1
    upstream.refresh_from_db()
    assert upstream.state == gemini_batch.CANCELLED and upstream.phase == "finished"
    assert set(batch.generations.values_list("status", flat=True)) == {"cancelled"}
    assert quotas.ledger_problems() == []


def test_a_submit_lost_with_its_worker_is_found_by_name_not_sent_again(
    alice, sandbox_model, economy_route, sandbox_url, sent
):
    _plan, batch = start(alice, sandbox_model, ["a lost kite", "a lost kite again"])
    upstream = batch.upstream_batches.get()
    key = economy_route.provider.keys.get()
    client = gemini_batch.GeminiBatchClient(sandbox_url, key.get_key())
    rows = [
        gemini_batch.BatchRow(str(g.pk), ImageRequest("gemini-3.1-flash-image", g.prompt, "1:1"))
        for g in batch.generations.all()
    ]
    client.create("gemini-3.1-flash-image", upstream.display_name, rows, inline_limit=10**8)
    # The worker died after Google took the job and before it wrote the name down.
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        phase="submitting", key=key, price=pricing.batch_price(economy_route)
    )
    drive(batch)

    assert sandbox_batch(sandbox_url)["created"] == 1
    assert batch.generations.filter(status=Generation.SUCCEEDED).count() == 2
    assert quotas.ledger_problems() == []


def test_economy_is_not_offered_without_a_batch_route(alice, sandbox_model, sent):
    Price.objects.filter(kind=Price.BATCH).delete()
    plan, _batch = start(alice, sandbox_model, ["a fox"], economy_mode=False)
    assert "Gemini Batch API route" in plan.economy_unavailable and not plan.economy_ok
    with pytest.raises(batches.BatchError):
        start(alice, sandbox_model, ["a fox"])


def test_economy_is_refused_when_the_jobs_in_progress_limit_is_smaller(
    alice, sandbox_model, economy_route, sent
):
    alice.max_concurrent_jobs = 2
    alice.save()
    defaults = batches.Defaults(model=sandbox_model, aspect_ratio="1:1", image_size="1K")
    plan = batches.check(alice, batches.parse_lines("a\nb\nc", defaults))
    assert plan.economy_refusal and "at once" in plan.economy_refusal
    with pytest.raises(batches.BatchError):
        batches.start(alice, "x", plan, economy_mode=True)
    assert not Generation.objects.exists()


def test_the_engine_never_runs_an_economy_row(alice, sandbox_model, economy_route, sent):
    _plan, batch = start(alice, sandbox_model, ["a patient fox"])
    row = batch.generations.get()
    assert engine.run_generation(row.pk) is None  # not claimable: it waits for its batch
    engine.sweep()
    row.refresh_from_db()
    assert row.status == Generation.QUEUED and row.attempts == 0


def test_the_batch_price_is_the_one_in_force(economy_route):
    assert pricing.batch_price(economy_route).kind == Price.BATCH
    assert economy_route.price_at().kind == Price.STANDARD  # interactive calls unaffected
    assert pricing.batch_price(economy_route, at=timezone.now().replace(year=2000)) is None


def test_the_hourly_audit_leaves_rows_waiting_at_google_alone(
    alice, sandbox_model, economy_route, sent
):
    """An economy row's reservation is hours old while Google works; only its own (50 h)
    deadline may end it, never the audit's 1.5 h rule for interactive jobs."""
    _plan, batch = start(alice, sandbox_model, ["a fox", "a kite"])
    rows = list(batch.generations.all())
    long_ago = timezone.now() - timedelta(hours=5)
    LedgerEntry.objects.filter(generation__in=rows).update(created=long_ago)
    Generation.objects.filter(pk__in=[r.pk for r in rows]).update(created=long_ago)
    assert engine.release_stale_reservations() == 0
    assert all(not g.refunded for g in Generation.objects.filter(batch=batch))
    assert quotas.ledger_problems() == []
