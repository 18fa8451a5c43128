"""Failover between routes, breakers, rate-limit waits and the fallback model, against a
real sandbox upstream (each test drives the engine by hand, as the Celery task would)."""

from datetime import timedelta

import pytest
from django.db.models import Count, F
from django.utils import timezone

from accounts import quotas
from generations import engine, outcomes, resilience, routing
from generations.failures import ErrorKind
from generations.models import Generation, KeyPermit, ModelSpec, Notice, Provider, Route
from generations.resilience.store import get_store
from generations.resilience.types import BreakerConfig, Permit
from tests.factories import make_route, png_bytes, submit_one

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


def again(job) -> float | None:
    """Run the job's next attempt now, whatever its countdown said."""
    Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    return engine.run_generation(job.pk)


@pytest.fixture
def relay(sandbox_model, sandbox_url) -> Route:
    """A second route for the Sandbox model through another provider and key."""
    return make_route(
        "sandbox",
        base_url=sandbox_url,
        provider_name="Relay",
        priority=20,
        key="relay-key-0123456789",
    )


def test_an_overload_fails_over_to_the_next_route_at_once(alice, sandbox_model, relay):
    job = submit_one(sandbox_model, alice, prompt="a kite [sandbox:503x1]")
    assert engine.run_generation(job.pk) == 0  # no waiting: another route is there
    assert again(job) is None
    job.refresh_from_db()
    log = list(job.attempt_log.values_list("route__provider__name", "outcome"))
    assert log == [("Sandbox (offline)", "transient"), ("Relay", "ok")]
    assert job.status == "succeeded" and job.route == relay
    assert quotas.ledger_problems() == []


def test_a_route_that_refuses_the_region_hands_the_job_over_and_is_not_retried(
    alice, sandbox_model, relay
):
    # 400 FAILED_PRECONDITION ("User location is not supported"): the key is fine and
    # retrying the same route cannot help, but a relay can serve.
    job = submit_one(sandbox_model, alice, prompt="a kite [sandbox:regionx1]")
    assert engine.run_generation(job.pk) == 0  # the next route at once, no backoff
    assert again(job) is None
    job.refresh_from_db()
    log = list(job.attempt_log.values_list("route__provider__name", "outcome"))
    assert log == [("Sandbox (offline)", "refused"), ("Relay", "ok")]
    assert job.status == "succeeded" and job.route == relay
    assert sandbox_model.routes.get(provider__is_sandbox=True).provider.keys.get().enabled
    assert quotas.ledger_problems() == []


def test_a_refusal_with_no_other_route_fails_at_once_and_refunds(alice, sandbox_model):
    job = submit_one(sandbox_model, alice, prompt="a kite [sandbox:region]")
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.refunded) == ("failed", "refused", True)
    assert job.failure_title == "Not available through this provider"
    assert "not available to this account or from this location" in job.error_message
    assert job.attempt_log.count() == 1
    assert quotas.summary(alice).reserved_month == 0 and quotas.ledger_problems() == []


def test_an_open_breaker_sends_calls_to_the_next_route(alice, sandbox_model, relay):
    primary = sandbox_model.routes.get(provider__is_sandbox=True)
    cfg = BreakerConfig.from_settings()
    for _ in range(cfg.consecutive):
        get_store().breaker_record(primary.pk, False, cfg)
    job = submit_one(sandbox_model, alice)
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.route == relay and job.attempt_log.get().route == relay


def test_with_every_breaker_open_the_job_waits_without_spending_an_attempt(alice, sandbox_model):
    primary = sandbox_model.routes.get()
    cfg = BreakerConfig.from_settings()
    for _ in range(cfg.consecutive):
        get_store().breaker_record(primary.pk, False, cfg)
    job = submit_one(sandbox_model, alice)
    delay = engine.run_generation(job.pk)
    assert 55 < delay <= cfg.open_seconds
    job.refresh_from_db()
    assert (job.status, job.attempts, job.stage) == ("queued", 0, "provider resting after errors")
    assert not job.attempt_log.exists()


def test_a_key_at_its_rpm_books_the_next_slot_and_the_job_wakes_into_it(
    alice, sandbox_model, settings
):
    settings.NANOWEB_RESILIENCE_STORE = "database"  # so the test can move time
    Provider.objects.filter(is_sandbox=True).update(rpm=1)
    first, second = submit_one(sandbox_model, alice), submit_one(sandbox_model, alice)
    assert engine.run_generation(first.pk) is None
    delay = engine.run_generation(second.pk)
    assert 50 < delay <= 61
    second.refresh_from_db()
    assert (second.status, second.attempts, second.stage) == ("queued", 0, "waiting for rate limit")
    slot = second.booked_slot
    booked = KeyPermit.objects.get(token=slot["token"])
    assert 50 < (booked.granted_at - timezone.now()).total_seconds() <= 61
    # A minute later, the job wakes into the slot it booked.
    KeyPermit.objects.filter(key_id=slot["key"]).update(
        granted_at=F("granted_at") - timedelta(seconds=61)
    )
    assert again(second) is None
    second.refresh_from_db()
    assert second.status == "succeeded" and second.booked_slot is None
    assert KeyPermit.objects.count() == 2  # no third permit was taken


def test_waiting_jobs_line_up_one_slot_each(alice, sandbox_model):
    Provider.objects.filter(is_sandbox=True).update(rpm=2)
    waits = [engine.run_generation(submit_one(sandbox_model, alice).pk) for _ in range(6)]
    assert waits[:2] == [None, None]
    # Two slots a minute: the next two jobs wake a window later, the two after that, two.
    assert all(50 < w <= 61 for w in waits[2:4]), waits
    assert all(115 < w <= 122 for w in waits[4:]), waits


def test_a_second_key_serves_while_the_first_waits(alice, sandbox_model):
    from generations.models import ProviderKey

    provider = sandbox_model.routes.get().provider
    provider.rpm = 1
    provider.save()
    extra = ProviderKey(provider=provider, label="second")
    extra.set_key("sandbox-second-key")
    extra.save()
    done = [submit_one(sandbox_model, alice) for _ in range(2)]
    for job in done:
        assert engine.run_generation(job.pk) is None
    labels = {j.attempt_log.get().key_label for j in done}
    assert labels == {"sandbox", "second"}


def test_the_fallback_model_serves_when_allowed_and_the_card_says_so(alice, sandbox_model, client):
    pro = ModelSpec.objects.get(slug="nano-banana-pro")
    make_route("nano-banana-pro", base_url="http://127.0.0.1:9")  # nothing listens there
    pro.fallback = sandbox_model
    pro.save()
    job = submit_one(pro, alice, image_size="2K")
    assert engine.run_generation(job.pk) == 0  # connection refused → fail over at once
    assert again(job) is None
    job.refresh_from_db()
    assert job.status == "succeeded" and job.route.model == sandbox_model
    assert job.actual_micros <= job.reserved_micros
    client.force_login(alice)
    studio = client.get("/").content.decode()
    assert "Made by Sandbox (offline)" in studio


def test_no_fallback_without_the_admin_allowing_it(alice, sandbox_model):
    pro = ModelSpec.objects.get(slug="nano-banana-pro")
    make_route("nano-banana-pro", base_url="http://127.0.0.1:9")
    job = submit_one(pro, alice)
    for _ in range(6):
        if again(job) is None:
            break
    job.refresh_from_db()
    assert job.status == "failed" and job.refunded
    assert not job.attempt_log.filter(route__model=sandbox_model).exists()


def test_a_fallback_that_cannot_do_the_request_is_not_used(alice, sandbox_model):
    flash = ModelSpec.objects.get(slug="nano-banana")
    make_route("nano-banana", base_url="http://127.0.0.1:9")
    sandbox_model.aspect_ratios = ["1:1"]
    sandbox_model.save()
    flash.fallback = sandbox_model
    flash.save()
    job = submit_one(flash, alice, aspect_ratio="16:9")
    assert routing.candidate_routes(job) == list(flash.routes.all())


def test_each_slow_attempt_gives_the_next_more_time(alice, sandbox_model):
    job = submit_one(sandbox_model, alice)
    route = sandbox_model.routes.get()
    base = engine._timeouts(job, route).read
    job.attempt_log.create(number=1, route=route, outcome=ErrorKind.SLOW)
    job.attempt_log.create(number=2, route=route, outcome=ErrorKind.SLOW)
    job.attempts = 3  # the third attempt, after the two slow ones
    assert engine._timeouts(job, route).read == base * 2


GPT_IMAGE_PRICES = {"input_per_mtok": 10_000_000, "image_output_per_mtok": 40_000_000}


def openai_route(sandbox_url, priority=20) -> Route:
    return make_route(
        "sandbox",
        base_url=f"{sandbox_url}/v1",
        upstream="gpt-image-1",
        provider_name="OpenAI-format relay",
        kind="openai",
        priority=priority,
        key="sk-relay-0123456789",
        prices=GPT_IMAGE_PRICES,
    )


def test_an_openai_format_route_edits_with_references_and_bills_its_usage(
    alice, sandbox_model, sandbox_url
):
    route = openai_route(sandbox_url, priority=1)
    job = submit_one(
        sandbox_model,
        alice,
        aspect_ratio="16:9",
        reference_bytes=[png_bytes(), png_bytes(color=(9, 9, 9))],
    )
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "succeeded" and job.route == route
    assert (job.image.width, job.image.height) == (1536, 1024)  # OpenAI's landscape size
    usage = job.usage
    assert usage["input_tokens"] > 0 and usage["output_image_tokens"] > 0
    expected = round(usage["input_tokens"] * 10 + usage["output_image_tokens"] * 40)
    assert job.actual_micros == expected <= job.reserved_micros
    assert quotas.ledger_problems() == []


def test_a_gemini_overload_fails_over_to_an_openai_format_relay(alice, sandbox_model, sandbox_url):
    relay = openai_route(sandbox_url)
    job = submit_one(sandbox_model, alice, prompt="a lamp [sandbox:503x1]")
    assert engine.run_generation(job.pk) == 0
    assert again(job) is None
    job.refresh_from_db()
    assert job.route == relay
    assert [a.outcome for a in job.attempt_log.all()] == ["transient", "ok"]


def test_an_openai_rate_limit_waits_for_its_retry_after(alice, sandbox_model, sandbox_url):
    sandbox_model.routes.update(enabled=False)
    openai_route(sandbox_url)
    job = submit_one(sandbox_model, alice, prompt="a lamp [sandbox:429x1]")
    delay = engine.run_generation(job.pk)
    attempt = job.attempt_log.get()
    assert (attempt.outcome, attempt.http_status) == ("rate_limited", 429)
    assert delay >= 1.0 and attempt.retry_delay == delay
    assert again(job) is None


def test_a_price_change_bills_jobs_before_and_after_it_at_their_own_price(alice, sandbox_model):
    from generations import pricing
    from generations.models import Price
    from generations.providers.base import Usage

    route = sandbox_model.routes.get()
    old = route.price_at()
    before, after = submit_one(sandbox_model, alice), submit_one(sandbox_model, alice)
    assert engine.run_generation(before.pk) is None
    cheaper = Price.objects.create(
        route=route,
        effective_from=timezone.now(),
        input_per_mtok=old.input_per_mtok // 2,
        text_output_per_mtok=old.text_output_per_mtok // 2,
        image_output_per_mtok=old.image_output_per_mtok // 2,
        note="price cut",
    )
    assert engine.run_generation(after.pk) is None
    for job, price in ((before, old), (after, cheaper)):
        job.refresh_from_db()
        usage = Usage(**{k: v for k, v in job.usage.items() if k != "upstream_cost_micros"})
        expected = pricing.cost_micros(pricing.Rates.of(price), usage, image_size="1K")
        assert job.actual_micros == expected
    assert after.actual_micros < before.actual_micros
    assert quotas.ledger_problems() == []


def test_a_price_that_rose_after_admission_is_charged_no_more_than_reserved(alice, sandbox_model):
    from accounts.models import LedgerEntry
    from generations.models import Price

    route = sandbox_model.routes.get()
    job = submit_one(sandbox_model, alice)
    old = route.price_at()
    Price.objects.create(
        route=route,
        effective_from=timezone.now(),
        input_per_mtok=old.input_per_mtok * 10,
        text_output_per_mtok=old.text_output_per_mtok * 10,
        image_output_per_mtok=old.image_output_per_mtok * 10,
    )
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.actual_micros == job.reserved_micros < job.usage["upstream_cost_micros"]
    settle = LedgerEntry.objects.get(generation=job, kind="settle")
    assert "the upstream's price for this image was" in settle.reason
    assert quotas.summary(alice).spent_month == job.reserved_micros


def test_an_ambiguous_timeout_is_flagged_retried_and_reserved_only_once(alice, relay):
    from accounts.models import LedgerEntry

    Provider.objects.update(read_timeout=0.5)
    job = submit_one(relay.model, alice, prompt="a slow one [sandbox:timeoutx1]")
    assert engine.run_generation(job.pk) is not None
    assert again(job) is None
    job.refresh_from_db()
    first, second = job.attempt_log.all()
    assert (first.outcome, first.may_have_been_billed) == ("slow", True)
    assert second.outcome == "ok" and job.status == "succeeded"
    kinds = list(LedgerEntry.objects.filter(generation=job).values_list("kind", flat=True))
    assert sorted(kinds) == ["reserve", "settle"]  # failover moved the one reservation


def test_a_route_that_used_up_its_retries_hands_the_job_to_one_still_resting(
    alice, sandbox_model, relay, settings
):
    """The primary is down (connection refused) and the relay's breaker is open: once the
    primary has used its retry budget the job waits for the relay instead of failing."""
    import time

    settings.NANOWEB_BREAKER_OPEN_SECONDS = 0.5
    primary = sandbox_model.routes.get(provider__is_sandbox=True)
    Provider.objects.filter(pk=primary.provider_id).update(base_url="http://127.0.0.1:9")
    cfg = BreakerConfig.from_settings()
    for _ in range(cfg.consecutive):
        get_store().breaker_record(relay.pk, False, cfg)
    job = submit_one(sandbox_model, alice)
    budget = engine.resilience.RETRY_BUDGET[ErrorKind.TRANSIENT]
    for _ in range(budget + 1):
        assert again(job) is not None
        if job.attempt_log.count() == budget + 1:
            break
        get_store().breaker_record(relay.pk, False, cfg)  # keep the relay resting meanwhile
    job.refresh_from_db()
    assert job.status == "queued"  # not failed: the relay has not been tried
    assert set(job.attempt_log.values_list("route", "outcome")) == {(primary.pk, "transient")}
    assert routing.spent_routes(job) == {primary.pk}

    time.sleep(0.6)  # the relay's breaker lets a probe through
    assert again(job) is None
    job.refresh_from_db()
    assert job.status == "succeeded" and job.route == relay
    assert quotas.ledger_problems() == []


def test_a_job_fails_once_every_route_has_used_up_its_retries(alice, sandbox_model, relay):
    Provider.objects.update(base_url="http://127.0.0.1:9")  # both down
    job = submit_one(sandbox_model, alice)
    for _ in range(20):
        if again(job) is None:
            break
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.refunded) == ("failed", "transient", True)
    per_route = dict(job.attempt_log.values_list("route").annotate(n=Count("pk")))
    budget = engine.resilience.RETRY_BUDGET[ErrorKind.TRANSIENT]
    assert per_route == {
        sandbox_model.routes.get(provider__is_sandbox=True).pk: budget + 1,
        relay.pk: budget + 1,
    }
    assert quotas.summary(alice).reserved_month == 0


@pytest.mark.parametrize(
    "kind, trigger", [(ErrorKind.NO_IMAGE, "no_image"), (ErrorKind.SLOW, "timeout")]
)
def test_no_image_and_timeouts_get_their_retries_once_per_job_not_per_route(
    alice, sandbox_model, relay, kind, trigger
):
    """Another route runs the same model: handing these over would only repeat the answer
    (or the bill of a call that timed out)."""
    Provider.objects.update(read_timeout=0.5)
    job = submit_one(sandbox_model, alice, prompt=f"a heron [sandbox:{trigger}]")
    for _ in range(10):
        if again(job) is None:
            break
    job.refresh_from_db()
    assert (job.status, job.error_kind) == ("failed", kind)
    assert job.attempt_log.count() == engine.resilience.RETRY_BUDGET[kind] + 1
    assert quotas.ledger_problems() == []


def test_a_rate_limited_route_hands_over_without_its_wait(alice, sandbox_model, relay):
    """The relay never rate-limited this job: it is tried soon, not after the primary's
    Retry-After."""
    from generations.providers.base import ProviderError

    primary = sandbox_model.routes.get(provider__is_sandbox=True)
    job = submit_one(sandbox_model, alice)
    budget = engine.resilience.RETRY_BUDGET[ErrorKind.RATE_LIMITED]
    for n in range(1, budget + 1):  # the primary's earlier 429s on this job
        job.attempt_log.create(number=n, route=primary, outcome=ErrorKind.RATE_LIMITED)
    Generation.objects.filter(pk=job.pk).update(status="running", attempts=budget + 1)
    job.refresh_from_db()
    choice = routing.Choice(
        primary,
        primary.provider.keys.get(),
        primary.price_at(),
        Permit(key_id=primary.provider.keys.get().pk, token="t"),
    )
    err = ProviderError(ErrorKind.RATE_LIMITED, "Slow down.", http_status=429, retry_after=600)
    delay = outcomes.handle_error(job, choice, err, 0.0)
    assert delay is not None and delay < 60
    job.refresh_from_db()
    assert job.status == "queued" and routing.choose_route(job).route == relay


def test_a_model_the_provider_shut_down_retires_the_route_and_fails_over(
    alice, sandbox_model, relay
):
    primary = sandbox_model.routes.get(provider__is_sandbox=True)
    Route.objects.filter(pk=primary.pk).update(upstream_model="gemini-3.1-flash-image-preview")
    job = submit_one(sandbox_model, alice)
    assert engine.run_generation(job.pk) == 0  # the next route at once
    assert again(job) is None
    job.refresh_from_db()
    log = list(job.attempt_log.values_list("route__provider__name", "outcome"))
    assert log == [("Sandbox (offline)", "model_gone"), ("Relay", "ok")]
    assert job.status == "succeeded" and job.route == relay
    primary.refresh_from_db()
    assert not primary.enabled and primary.retired_at
    assert "gemini-3.1-flash-image-preview is not found" in primary.retired_reason
    notice = Notice.objects.active().get()
    assert "gemini-3.1-flash-image-preview" in notice.message and "Sandbox" in notice.title
    later = submit_one(sandbox_model, alice, prompt="another")
    assert engine.run_generation(later.pk) is None  # straight to the relay now
    assert later.attempt_log.get().route == relay


def test_with_no_route_left_the_card_names_the_replacement(alice, sandbox_model):
    ModelSpec.objects.filter(slug="sandbox").update(
        replacement=ModelSpec.objects.get(slug="nano-banana-2-1")
    )
    sandbox_model.routes.update(upstream_model="gemini-3-pro-image-preview")
    job = submit_one(sandbox_model, alice)
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.refunded) == ("failed", "model_gone", True)
    assert job.failure_title == "Model shut down by the provider"
    assert job.error_message.endswith("Nano Banana 2.1 replaces it.")
    assert quotas.ledger_problems() == []


def test_one_persons_always_failing_prompts_do_not_rest_the_route_for_a_teammate(
    alice, bob, sandbox_model
):
    """20 prompts that break the upstream every time, and a teammate's healthy jobs in
    between on the same (only) route: the teammate's jobs go through at once, and each
    failing job fails by its own retry budget without opening the route."""
    failing = [
        submit_one(sandbox_model, alice, prompt=f"a broken thing {i} [sandbox:503]")
        for i in range(20)
    ]
    healthy = [submit_one(sandbox_model, bob, prompt=f"a heron {i}") for i in range(5)]
    order = [job for i in range(5) for job in (healthy[i], *failing[4 * i : 4 * i + 4])]
    for job in order:  # the first round: a teammate's job, then four failing ones
        again(job)
    assert [j.status for j in Generation.objects.filter(user=bob)] == ["succeeded"] * 5
    for _ in range(6):
        for job in failing:
            if Generation.objects.filter(pk=job.pk).in_flight().exists():
                again(job)
    route = sandbox_model.routes.get()
    assert get_store().breaker_state(route.pk)["opened_count"] == 0
    for job in Generation.objects.filter(user=bob):
        assert list(job.attempt_log.values_list("outcome", flat=True)) == ["ok"]
    for job in Generation.objects.filter(user=alice):
        assert (job.status, job.error_kind, job.refunded) == ("failed", "transient", True)
        assert job.attempt_log.count() == 1 + resilience.RETRY_BUDGET[ErrorKind.TRANSIENT]
    assert quotas.ledger_problems() == []
