"""Per-person and per-team limits: team defaults, own overrides, shared team totals."""

import pytest
from django.db import transaction

from accounts import limits, quotas
from accounts.models import Team, usd_to_micros
from generations.jobs import SubmitError, submit
from generations.models import ModelSpec
from tests.factories import job_request, make_route, make_user, png_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


@pytest.fixture
def flash(db):
    return make_route("nano-banana").model


@pytest.fixture
def pro(db):
    return make_route("nano-banana-pro").model


@pytest.fixture
def crew(db):
    return Team.objects.create(
        name="Crew", daily_image_limit=3, monthly_budget_micros=None, max_concurrent_jobs=None
    )


def member(email, team, **kw):
    return make_user(email, team=team, uses_team_limits=True, **kw)


def test_it_uses_the_teams_member_limits_by_default(crew, flash):
    dana = member("dana@example.com", crew, daily_image_limit=1000)
    assert limits.for_user(dana).daily_images == 3
    submit(dana, job_request(flash, count=3))
    with pytest.raises(SubmitError, match="Daily image limit reached: 3 of 3"):
        submit(dana, job_request(flash))


def test_own_limits_override_the_team_when_asked(crew, flash):
    erin = make_user("erin@example.com", team=crew, daily_image_limit=5)
    assert limits.for_user(erin).daily_images == 5
    assert limits.for_user(erin).source == "own"
    submit(erin, job_request(flash, count=4))


def test_a_shared_team_budget_is_checked_with_the_members_own(crew, flash):
    per_image = submit(member("a@example.com", crew), job_request(flash))[0].reserved_micros
    crew.shared_monthly_budget_micros = 3 * per_image
    crew.save()
    b = member("b@example.com", crew)
    submit(b, job_request(flash, count=2))
    with pytest.raises(SubmitError, match="Team Crew's shared monthly budget reached"):
        submit(b, job_request(flash))
    assert quotas.summary(b).images_today == 2  # the refusal changed nothing
    assert quotas.ledger_problems() == []


def test_a_shared_team_daily_limit_counts_every_member(crew, flash):
    crew.shared_daily_image_limit = 2
    crew.save()
    submit(member("a@example.com", crew), job_request(flash))
    submit(member("b@example.com", crew), job_request(flash))
    with pytest.raises(SubmitError, match="Team Crew's daily image limit reached: 2 of 2"):
        submit(member("c@example.com", crew), job_request(flash))


def test_settling_and_releasing_keep_team_counters_in_line(crew, flash):
    crew.shared_monthly_budget_micros = usd_to_micros(5)
    crew.save()
    a = member("a@example.com", crew)
    one, two = submit(a, job_request(flash, count=2))
    with transaction.atomic():
        quotas.settle(one, 38_820)
    quotas.release(two, reason="blocked")
    assert quotas.ledger_problems() == []
    month = crew.quota_counters.get(period="month")
    assert (month.micros_spent, month.micros_reserved, month.images_used) == (38_820, 0, 1)


def test_jobs_in_progress_are_capped_and_finished_ones_free_a_slot(flash, charlie):
    charlie.max_concurrent_jobs = 2
    charlie.save()
    first, _ = submit(charlie, job_request(flash, count=2))
    with pytest.raises(SubmitError, match="you may have 2 at once"):
        submit(charlie, job_request(flash))
    quotas.settle(first, 38_820)
    submit(charlie, job_request(flash))
    assert quotas.ledger_problems() == []


def test_models_sizes_counts_and_references_follow_the_limits(charlie, flash, pro):
    charlie.allowed_models.set([pro])
    charlie.max_image_size = "2K"
    charlie.max_images_per_request = 2
    charlie.max_reference_images = 1
    charlie.save()
    refused = [
        (job_request(flash), "model", "Nano Banana is not among the models your limits allow"),
        (job_request(pro, image_size="4K"), "image_size", "largest size your limits allow is 2K"),
        (job_request(pro, count=3), "count", "Your limits allow 2 images per request"),
        (
            job_request(pro, reference_bytes=[png_bytes(), png_bytes(color=(1, 1, 1))]),
            "references",
            "Your limits allow 1 reference image; you attached 2",
        ),
    ]
    for req, field, message in refused:
        with pytest.raises(SubmitError, match=message) as exc:
            submit(charlie, req)
        assert exc.value.field == field
    assert submit(charlie, job_request(pro, image_size="2K", count=2))
    assert not charlie.generations.filter(model__slug="nano-banana").exists()


def test_a_teams_model_list_names_the_team(crew, flash, pro):
    crew.allowed_models.set([ModelSpec.objects.get(slug="nano-banana-pro")])
    with pytest.raises(SubmitError, match="models team Crew's limits allow"):
        submit(member("f@example.com", crew), job_request(flash))
