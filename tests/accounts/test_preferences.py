"""Language and time zone: the browser's by default, the person's own once chosen."""

import zoneinfo

import pytest
from django.utils import timezone

from accounts.models import LedgerEntry
from tests.accounts.conftest import charged

pytestmark = pytest.mark.django_db


def test_the_browsers_language_sets_the_page_language(client, alice):
    client.force_login(alice)
    page = client.get("/usage", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")
    assert '<html lang="zh-hans">' in page.content.decode()
    assert page["Content-Language"] == "zh-hans"
    english = client.get("/usage", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert '<html lang="en">' in english.content.decode()


def test_a_chosen_language_wins_over_the_browser_and_is_remembered(client, alice):
    client.force_login(alice)
    r = client.post(
        "/accounts/preferences/", {"language": "zh-hans", "time_zone": "", "next": "/usage"}
    )
    assert r.status_code == 302 and r["Location"] == "/usage"
    assert r.cookies["django_language"].value == "zh-hans"
    alice.refresh_from_db()
    assert alice.language == "zh-hans"
    client.cookies.pop("django_language")  # another device: only the account remembers
    page = client.get("/usage", HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
    assert '<html lang="zh-hans">' in page


@pytest.mark.parametrize(
    "data, field",
    [
        ({"language": "xx", "time_zone": ""}, "language"),
        ({"language": "", "time_zone": "Mars/Olympus_Mons"}, "time_zone"),
    ],
)
def test_a_language_or_zone_that_is_not_offered_is_refused(client, alice, data, field):
    client.force_login(alice)
    r = client.post("/accounts/preferences/", data)
    assert r.status_code == 400 and 'class="field-error"' in r.content.decode()
    alice.refresh_from_db()
    assert (alice.language, alice.time_zone) == ("", "")


def test_it_never_redirects_to_another_site(client, alice):
    client.force_login(alice)
    r = client.post(
        "/accounts/preferences/",
        {"language": "en", "time_zone": "", "next": "https://evil.example/"},
    )
    assert r.status_code == 302 and r["Location"] == "/accounts/preferences/"


def _ledger_time(client) -> str:
    page = client.get("/usage").content.decode()
    ledger = page[page.index("<h2>Ledger</h2>") :]
    return ledger.split("<time", 1)[1].split(">", 1)[1].split("<", 1)[0]


def _expected(zone: str) -> str:
    created = LedgerEntry.objects.order_by("-created").first().created
    local = timezone.localtime(created, zoneinfo.ZoneInfo(zone))
    return local.strftime("%b ") + str(local.day) + local.strftime(", %H:%M")


def test_times_are_shown_in_the_browsers_zone_then_the_chosen_one(client, alice, flash):
    charged(alice, flash, 38_820)
    client.force_login(alice)
    client.cookies["nw_tz"] = "Asia%2FShanghai"  # as nanoweb.js sets it
    assert _ledger_time(client) == _expected("Asia/Shanghai")
    client.post("/accounts/preferences/", {"language": "", "time_zone": "America/New_York"})
    assert _ledger_time(client) == _expected("America/New_York")
    client.cookies["nw_tz"] = "Not/AZone"
    alice.time_zone = ""
    alice.save()
    assert _ledger_time(client) == _expected("UTC")  # neither: the server's TIME_ZONE


def test_the_page_offers_every_zone_and_names_the_browsers(client, alice):
    client.force_login(alice)
    client.cookies["nw_tz"] = "Asia%2FShanghai"
    page = client.get("/accounts/preferences/").content.decode()
    assert "The browser&#x27;s time zone (Asia/Shanghai)" in page
    assert '<option value="Europe/Berlin">' in page and "简体中文" in page


def test_the_daily_reset_is_told_in_the_persons_own_time(
    client, alice, sandbox_model, no_broker, settings
):
    """A Shanghai team on a UTC quota: "resets at midnight UTC: 08:00 your time"."""
    settings.NANOWEB_QUOTA_TIMEZONE = "UTC"
    alice.daily_image_limit, alice.time_zone = 1, "Asia/Shanghai"
    alice.save()
    client.force_login(alice)
    form = {
        "prompt": "a kite",
        "model": "sandbox",
        "aspect_ratio": "1:1",
        "image_size": "1K",
        "count": 1,
    }
    assert client.post("/generate", form, HTTP_HX_REQUEST="true").status_code == 200
    refused = client.post("/generate", {**form, "prompt": "another kite"}, HTTP_HX_REQUEST="true")
    body = refused.content.decode()
    assert refused.status_code == 422
    assert "resets at midnight UTC: 08:00 your time (Asia/Shanghai)" in body


def test_a_chinese_browser_gets_the_navigation_in_chinese(client, alice):
    client.force_login(alice)
    page = client.get("/usage", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    nav = page[page.index('<nav class="nav"') : page.index("</nav>")]
    assert all(word in nav for word in ("创作", "图库", "批量", "用量"))
    assert "退出登录" in page and "Sign out" not in page
    english = client.get("/usage", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert ">Studio</a>" in english and "Sign out" in english


def test_a_chinese_browser_gets_the_studio_form_in_chinese(client, alice, sandbox_model):
    client.force_login(alice)
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    for words in ("提示词", "宽高比", "参考图", "生成", "最近", "沙盒（离线）"):
        assert words in page, words
    assert ">Prompt</label>" not in page and ">Generate</span>" not in page


def test_sign_in_and_the_error_pages_speak_chinese_to_a_chinese_browser(client):
    login = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "<h1>登录</h1>" in login or ">登录<" in login
    missing = client.get("/no-such-page", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert missing.status_code == 404 and "找不到页面" in missing.content.decode()


def test_the_usage_page_speaks_chinese_to_a_chinese_browser(client, alice, flash):
    charged(alice, flash, 38_820)
    client.force_login(alice)
    page = client.get("/usage", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    for words in ("我的用量", "今天剩余图片", "本月剩余预算", "每日扣费", "账目", "金额"):
        assert words in page, words


def test_the_gallery_speaks_chinese_to_a_chinese_browser(client, alice):
    client.force_login(alice)
    page = client.get("/gallery", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    for words in ("搜索提示词", "我的图片", "全部模型", "还没有图片。", "打包下载"):
        assert words in page, words


def test_the_duplicate_offer_speaks_chinese(client, alice, sandbox_model, no_broker):
    from generations import engine
    from generations.models import Generation

    client.force_login(alice)
    form = {
        "prompt": "一只狐狸",
        "model": "sandbox",
        "aspect_ratio": "1:1",
        "image_size": "1K",
        "count": 1,
    }
    client.post("/generate", form, HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="zh-CN")
    engine.run_generation(Generation.objects.get().pk)
    again = client.post("/generate", form, HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="zh-CN")
    body = again.content.decode()
    assert "你刚刚生成过一模一样的图片。" in body and "沿用之前的结果——免费" in body
    assert "重新生成" in body and "You made" not in body
