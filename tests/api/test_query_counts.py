"""Queries one API image costs, phase by phase (issue 18): ceilings that catch a change
adding queries to the hot path. Lower them when a change takes queries away."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import quotas, tokens
from generations import engine, jobs
from generations.api import mapping, results, waiting

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

CEILINGS = {"token": 1, "admit": 16, "attempt": 28, "answer": 2}


def one_image(secret: str, prompt: str) -> dict[str, int]:
    counts = {}
    with CaptureQueriesContext(connection) as q:
        user = tokens.authenticate(secret, ip="127.0.0.1")
    counts["token"] = len(q)
    with CaptureQueriesContext(connection) as q:
        req = jobs.JobRequest(
            model=mapping.find_model("sandbox"),
            prompt=prompt,
            aspect_ratio="1:1",
            image_size="1K",
            count=1,
        )
        gens, _ = waiting.submit(user, req)
    counts["admit"] = len(q)
    with CaptureQueriesContext(connection) as q:
        assert engine.run_generation(gens[0].pk) is None
    counts["attempt"] = len(q)
    with CaptureQueriesContext(connection) as q:
        assert waiting._finished([gens[0].pk]) == [gens[0].pk]
        done = waiting.refresh([gens[0].pk])
        assert results.b64(done[0])
    counts["answer"] = len(q)
    return counts


def test_it_makes_an_api_image_within_its_query_ceilings(alice, sandbox_model):
    secret = tokens.create(alice, "bench").secret
    one_image(secret, "a first image warms what a process keeps")
    counts = one_image(secret, "a lighthouse at dusk")
    print("queries per image:", counts, "total", sum(counts.values()))
    assert {k: v for k, v in counts.items() if v > CEILINGS[k]} == {}
    assert quotas.ledger_problems() == []
