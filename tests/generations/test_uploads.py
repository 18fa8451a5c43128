"""Reference uploads refused through the studio form, as a person would submit them:
each refusal says why next to the field, and nothing is stored or charged."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from accounts.models import LedgerEntry
from generations.models import Generation, Upload
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db


def submit(client, *files):
    return client.post(
        "/generate",
        {
            "prompt": "use my reference",
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "references": list(files),
        },
        HTTP_HX_REQUEST="true",
    )


def refused(response) -> str:
    assert response.status_code == 422
    assert not Generation.objects.exists()
    assert not Upload.objects.exists()
    assert not LedgerEntry.objects.exists()
    page = response.content.decode()
    start = page.index('<div class="field">', page.index("Reference images") - 200)
    return page[start : page.index("</div>", page.index('class="dropzone"')) + 400]


@pytest.fixture
def person(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    return alice


def test_a_decompression_bomb_is_refused_by_its_header(client, person):
    buf = io.BytesIO()
    PILImage.new("1", (8_000, 8_000)).save(buf, "PNG")  # 64 megapixels in a few KB
    assert len(buf.getvalue()) < 200_000
    field = refused(submit(client, SimpleUploadedFile("bomb.png", buf.getvalue())))
    assert "bomb.png is 8000×8000 pixels; the limit is 50 megapixels." in field


def test_a_truncated_png_is_refused_as_damaged(client, person):
    data = png_bytes(300, 200, (10, 200, 90))
    field = refused(submit(client, SimpleUploadedFile("half.png", data[: len(data) // 2])))
    assert "half.png is damaged or incomplete and could not be read." in field


def test_an_svg_is_refused(client, person):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    field = refused(submit(client, SimpleUploadedFile("logo.svg", svg, "image/svg+xml")))
    assert "logo.svg is not a PNG, JPEG or WebP image." in field


def test_an_html_page_dressed_as_a_png_is_refused(client, person):
    polyglot = b"<html><script>alert(document.cookie)</script></html>\n" + png_bytes()
    field = refused(submit(client, SimpleUploadedFile("photo.png", polyglot, "image/png")))
    assert "photo.png is not a PNG, JPEG or WebP image." in field


def test_html_hidden_inside_a_real_png_never_reaches_storage(client, person):
    """A PNG that is also an HTML page (text chunk + trailing bytes) is a valid image: it is
    accepted, but only its pixels are kept."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "<script>alert(1)</script>")
    buf = io.BytesIO()
    PILImage.new("RGB", (40, 30), (1, 2, 3)).save(buf, "PNG", pnginfo=info)
    polyglot = buf.getvalue() + b"<html><script>alert(2)</script></html>"
    r = submit(client, SimpleUploadedFile("poly.png", polyglot, "image/png"))
    assert r.status_code == 200
    stored = Upload.objects.get().file.read()
    assert b"<script" not in stored and b"<html" not in stored
    assert PILImage.open(io.BytesIO(stored)).size == (40, 30)


def test_a_50_mb_file_is_refused_by_its_size(client, person):
    big = SimpleUploadedFile("huge.png", png_bytes() + b"\0" * (50 * 1024 * 1024))
    field = refused(submit(client, big))
    assert "huge.png is 50.0 MB; the limit is 20 MB." in field


def test_15_files_are_refused_by_count(client, person):
    files = [SimpleUploadedFile(f"ref{i}.png", png_bytes(8, 8)) for i in range(15)]
    field = refused(submit(client, *files))
    assert "accepts at most 14 reference images; you attached 15." in field


def test_a_refused_upload_keeps_the_prompt_for_another_try(client, person):
    r = submit(client, SimpleUploadedFile("x.svg", b"<svg/>"))
    assert r.status_code == 422
    assert b"use my reference</textarea>" in r.content
