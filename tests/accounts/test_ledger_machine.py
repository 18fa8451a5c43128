"""A Hypothesis state machine over the money path: whatever sequence of reservations,
settlements, releases, redeliveries, grants and period rollovers happens, the ledger
equals the counters and no limit is ever overrun."""

import datetime as dt
import itertools
import uuid

import pytest
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts import quotas
from accounts.models import QuotaCounter, Team
from generations.models import Generation
from tests.factories import make_route, make_user

pytestmark = pytest.mark.django_db
NAMES = itertools.count()


class MoneyPath(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        n = next(NAMES)
        self.model = MODEL
        self.team = Team.objects.create(name=f"team-{n}", shared_monthly_budget_micros=1_500_000)
        self.people = [
            make_user(
                f"m{n}-{i}@example.com",
                team=self.team,
                daily_image_limit=6,
                monthly_budget_micros=1_000_000,
                max_concurrent_jobs=5,
            )
            for i in range(2)
        ]
        self.day = dt.date(2026, 1, 30)
        self.open_jobs: list[Generation] = []
        self.closed_jobs: list[Generation] = []

    @rule(who=st.integers(0, 1), count=st.integers(1, 3), per_image=st.integers(1, 400_000))
    def reserve(self, who, count, per_image):
        user = self.people[who]
        try:
            with transaction.atomic():
                jobs = [
                    Generation.objects.create(
                        user=user,
                        team=self.team,
                        model=self.model,
                        request_id=uuid.uuid4(),
                        prompt="p",
                        aspect_ratio="1:1",
                        quota_day=self.day,
                        reserved_micros=per_image,
                        deadline=timezone.now() + dt.timedelta(hours=1),
                    )
                    for _ in range(count)
                ]
                quotas.reserve(user, jobs, per_image)
        except quotas.QuotaExceeded:
            return
        self.open_jobs += jobs

    @precondition(lambda self: self.open_jobs)
    @rule(pick=st.integers(0, 100), share=st.floats(0, 1))
    def settle(self, pick, share):
        job = self.open_jobs.pop(pick % len(self.open_jobs))
        assert quotas.settle(job, int(job.reserved_micros * share))
        self.closed_jobs.append(job)

    @precondition(lambda self: self.open_jobs)
    @rule(pick=st.integers(0, 100))
    def release(self, pick):
        job = self.open_jobs.pop(pick % len(self.open_jobs))
        assert quotas.release(job, reason="failed")
        self.closed_jobs.append(job)

    @precondition(lambda self: self.closed_jobs)
    @rule(pick=st.integers(0, 100), settle=st.booleans())
    def redelivered(self, pick, settle):
        job = self.closed_jobs[pick % len(self.closed_jobs)]
        again = quotas.settle(job, 1) if settle else quotas.release(job, reason="again")
        assert again is False

    @rule(who=st.integers(0, 1), micros=st.integers(1, 300_000), images=st.integers(0, 2))
    def grant(self, who, micros, images):
        quotas.grant(
            self.people[who],
            micros=micros,
            images=images,
            actor=None,
            reason="state machine",
            now=self._noon(),
        )

    @rule(days=st.sampled_from([1, 2, 31]))
    def time_passes(self, days):
        self.day += dt.timedelta(days=days)

    def _noon(self):
        return dt.datetime.combine(self.day, dt.time(12), tzinfo=dt.UTC)

    @invariant()
    def ledger_equals_counters(self):
        mine = QuotaCounter.objects.filter(Q(user__in=self.people) | Q(team=self.team))
        assert quotas.ledger_problems(mine) == []

    @invariant()
    def no_limit_is_overrun(self):
        for c in QuotaCounter.objects.filter(user__in=self.people):
            if c.period == QuotaCounter.MONTH:
                assert c.micros_spent + c.micros_reserved <= 1_000_000
            elif c.period == QuotaCounter.DAY:
                assert c.images_used + c.images_reserved <= 6
            else:
                assert 0 <= c.images_reserved <= 5
        for c in QuotaCounter.objects.filter(team=self.team, period=QuotaCounter.MONTH):
            assert c.micros_spent + c.micros_reserved <= 1_500_000


MODEL = None


def test_the_ledger_invariant_holds_under_any_sequence(db):
    global MODEL
    MODEL = make_route("nano-banana").model
    runner = MoneyPath.TestCase
    runner.settings = settings(
        max_examples=20,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    runner().runTest()
