"""Every page has an icon: browsers that ask for /favicon.ico get the site's SVG."""

from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "static"
ICON_LINK = '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">'


def test_favicon_ico_leads_to_the_sites_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/img/favicon.svg"
    assert (STATIC / "img" / "favicon.svg").read_text().lstrip().startswith("<svg")


@pytest.mark.django_db
def test_admin_pages_link_the_icon(client):
    from tests.factories import make_user

    # the admin signs in through the site's own (throttled) sign-in page
    assert ICON_LINK in client.get("/admin/login/", follow=True).content.decode()
    client.force_login(make_user("lead@example.com", is_staff=True, is_superuser=True))
    page = client.get("/admin/").content.decode()
    assert ICON_LINK in page and "/static/css/admin.css" in page
