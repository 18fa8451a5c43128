"""accounts/tokens.py: a process remembers the tokens it checked, briefly and safely."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken, User

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cache_on(settings):
    settings.NANOWEB_TOKEN_CACHE_SECONDS = 10


@pytest.fixture
def clock(monkeypatch):
    """The cache's clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(tokens, "_clock", lambda: now[0])
    return now


def test_it_answers_a_token_it_checked_a_moment_ago_without_a_query(
    alice, django_assert_num_queries
):
    secret = tokens.create(alice, "script").secret
    tokens.authenticate(secret, ip="10.0.0.1")
    with django_assert_num_queries(0):
        user = tokens.authenticate(secret, ip="10.0.0.1")
    assert (user.pk, user.email, user.api_token.name) == (alice.pk, alice.email, "script")


def test_it_hands_each_caller_its_own_copy_of_the_user(alice):
    secret = tokens.create(alice, "script").secret
    first = tokens.authenticate(secret)
    first.email = "changed@example.com"
    assert tokens.authenticate(secret).email == alice.email
    assert tokens.authenticate(secret) is not first


def test_it_refuses_a_token_revoked_in_this_process_at_once(alice):
    issued = tokens.create(alice, "script")
    tokens.authenticate(issued.secret)
    tokens.revoke(alice, issued.token.pk)
    with pytest.raises(tokens.TokenRefused, match="was revoked"):
        tokens.authenticate(issued.secret)


def test_it_refuses_a_token_revoked_elsewhere_once_the_cache_time_is_over(alice, clock, settings):
    settings.NANOWEB_TOKEN_CACHE_SECONDS = 10
    issued = tokens.create(alice, "script")
    tokens.authenticate(issued.secret)
    ApiToken.objects.filter(pk=issued.token.pk).update(revoked_at=timezone.now())
    clock[0] += 9
    tokens.authenticate(issued.secret)  # still trusted: another process revoked it
    clock[0] += 2
    with pytest.raises(tokens.TokenRefused, match="was revoked"):
        tokens.authenticate(issued.secret)


def test_it_refuses_a_disabled_account_once_the_cache_time_is_over(alice, clock, settings):
    settings.NANOWEB_TOKEN_CACHE_SECONDS = 10
    secret = tokens.create(alice, "script").secret
    tokens.authenticate(secret)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    clock[0] += 11
    with pytest.raises(tokens.TokenRefused, match="disabled"):
        tokens.authenticate(secret)


def test_it_never_remembers_a_wrong_secret_for_a_known_prefix(alice):
    secret = tokens.create(alice, "script").secret
    tokens.authenticate(secret)
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with pytest.raises(tokens.TokenRefused, match="Unknown API token"):
        tokens.authenticate(forged)


def test_it_still_writes_last_used_at_most_once_a_minute(alice, django_assert_num_queries):
    issued = tokens.create(alice, "script")
    tokens.authenticate(issued.secret, ip="10.0.0.1")
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    with django_assert_num_queries(0):
        tokens.authenticate(issued.secret, ip="10.0.0.1")
    with django_assert_num_queries(1):  # another address is written at once
        tokens.authenticate(issued.secret, ip="10.0.0.2")
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert row.last_used_ip == "10.0.0.2" and row.last_used_at >= first


def test_it_asks_the_database_every_time_when_the_cache_is_off(
    alice, settings, django_assert_num_queries
):
    settings.NANOWEB_TOKEN_CACHE_SECONDS = 0
    secret = tokens.create(alice, "script").secret
    tokens.authenticate(secret, ip="10.0.0.1")
    with django_assert_num_queries(1):
        tokens.authenticate(secret, ip="10.0.0.1")
