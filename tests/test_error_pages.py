"""Mistyped addresses get nanoweb's own 404, with the way back; the API keeps its JSON."""

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from tests.factories import page_text

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api", "/studio/nope", "/settings/apis"])
def test_a_mistyped_address_gets_a_styled_404_with_links(client, alice, path):
    client.force_login(alice)
    r = client.get(path)
    assert r.status_code == 404
    html = r.content.decode()
    assert "nanoweb.css" in html and 'class="topbar"' in html  # the product's own page
    text = page_text(r.content)
    assert "There is no page here" in text and path in text
    assert 'href="/settings/api"' in html and 'href="/"' in html


def test_signed_out_the_404_is_styled_too(client):
    r = client.get("/api")
    assert r.status_code == 404 and "There is no page here" in page_text(r.content)


def test_the_api_keeps_its_own_404(client):
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r["Content-Type"] == "application/json"


def test_the_500_page_needs_no_database(django_assert_num_queries):
    request = RequestFactory().get("/")
    with django_assert_num_queries(0):
        r = server_error(request)
    assert r.status_code == 500 and "Something went wrong" in r.content.decode()
