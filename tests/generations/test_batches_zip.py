"""The batch zip: the images and a manifest, streamed a chunk at a time."""

import csv
import io
import re
import zipfile

import pytest
from django.test import AsyncClient

from generations import batches, engine
from generations.models import Batch
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import route_sandbox

pytestmark = pytest.mark.django_db(transaction=True)


def _batch_made(client, alice, prompts: str, *, fail: str = "", name: str = "Zip me") -> Batch:
    client.force_login(alice)
    client.post(
        "/batches/start",
        {
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "name": name,
            "prompts": prompts,
        },
    )
    batch = Batch.objects.get()
    for gen in batch.generations.all():
        if gen.prompt == fail:
            engine.fail(gen, "blocked", "Blocked.")
        else:
            assert engine.run_generation(gen.pk) is None
    return batch


@pytest.fixture
def sandbox(settings, no_broker):
    with running_sandbox(SandboxConfig()) as url:
        yield route_sandbox(url, settings)


def test_it_streams_the_images_and_a_manifest(client, alice, sandbox):
    batch = _batch_made(client, alice, "a red fox\na grey heron\nblocked one", fail="blocked one")
    r = client.get(f"/batches/{batch.pk}/zip")
    assert r.status_code == 200 and r.streaming
    assert r["Content-Type"] == "application/zip"
    assert r["Content-Disposition"] == 'attachment; filename="nanoweb-zip-me.zip"'
    chunks = list(r.streaming_content)
    assert len(chunks) > 3  # written and sent piece by piece
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names[0] == "manifest.csv"
    assert [n.rsplit(".", 1)[0] for n in names[1:]] == ["001-a-red-fox", "002-a-grey-heron"]
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig"))))
    assert [m["prompt"] for m in manifest] == ["a red fox", "a grey heron", "blocked one"]
    assert [m["status"] for m in manifest] == ["succeeded", "succeeded", "failed"]
    assert manifest[2]["file"] == "" and manifest[2]["cost_usd"] == "0.000000"
    assert manifest[0]["file"] in names and re.fullmatch(r"0\.0\d{5}", manifest[0]["cost_usd"])
    first = batch.generations.get(prompt="a red fox").image
    assert archive.read(manifest[0]["file"]) == first.file.open("rb").read()


def test_it_streams_without_buffering_under_asgi(client, alice, sandbox):
    """Under ASGI the response pulls one chunk at a time (a plain iterator would be
    read whole into memory by Django first)."""
    from asgiref.sync import async_to_sync

    batch = _batch_made(client, alice, "one\ntwo")

    async def download():
        async_client = AsyncClient()
        await async_client.aforce_login(alice)
        r = await async_client.get(f"/batches/{batch.pk}/zip")
        return r, [chunk async for chunk in r.streaming_content]

    r, chunks = async_to_sync(download)()
    assert r.status_code == 200 and r.is_async and len(chunks) > 2
    assert len(zipfile.ZipFile(io.BytesIO(b"".join(chunks))).namelist()) == 3


def test_the_manifest_lists_cost_and_model(alice, sandbox, client):
    batch = _batch_made(client, alice, "only one")
    members = batches.zip_members(batch)
    rows = list(csv.reader(io.StringIO(batches.manifest_csv(members).decode("utf-8-sig"))))
    assert rows[0] == ["prompt", "model", "aspect_ratio", "size", "cost_usd", "file", "status"]
    assert rows[1][:4] == ["only one", "Sandbox (offline)", "1:1", "1K"]


def test_a_prompt_that_looks_like_a_formula_is_text_in_the_manifest(alice, sandbox, client):
    batch = _batch_made(client, alice, '=HYPERLINK("http://evil.example","x")')
    members = batches.zip_members(batch)
    rows = list(csv.reader(io.StringIO(batches.manifest_csv(members).decode("utf-8-sig"))))
    assert rows[1][0] == '\'=HYPERLINK("http://evil.example","x")'


def test_chinese_prompts_and_names_stay_chinese_in_the_zip(client, alice, sandbox):
    """Issue 20: a Shanghai team's zip read 001-image.png for every Chinese prompt."""
    batch = _batch_made(client, alice, "一只在雨中读报的狐狸\n春节海报，红色", name="春节 海报")
    r = client.get(f"/batches/{batch.pk}/zip")
    disposition = r["Content-Disposition"]
    assert disposition.startswith('attachment; filename="nanoweb-')
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.isascii()  # for clients that do not read filename*
    assert "filename*=UTF-8''nanoweb-%E6%98%A5%E8%8A%82-%E6%B5%B7%E6%8A%A5.zip" in disposition
    archive = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    names = [n.rsplit(".", 1)[0] for n in archive.namelist()[1:]]
    assert names == ["001-一只在雨中读报的狐狸", "002-春节海报红色"]
    assert all(i.flag_bits & 0x800 for i in archive.infolist()[1:])  # names flagged UTF-8
    manifest = archive.read("manifest.csv")
    assert manifest.startswith("\ufeff".encode())  # Excel on Chinese Windows reads UTF-8
    assert "一只在雨中读报的狐狸" in manifest.decode("utf-8-sig")
