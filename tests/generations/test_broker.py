"""The embedded broker never shows a worker a message that is still being written."""

from queue import Empty

import pytest
from django.conf import settings
from kombu import Connection
from kombu.exceptions import ChannelError

import nanoweb.broker
from nanoweb.celery import app


@pytest.fixture
def channel(tmp_path):
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }
    with Connection(
        "filesystem://", transport="nanoweb.broker:Transport", transport_options=options
    ) as conn:
        yield conn.channel()


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("filesystem://"),
    reason="Redis (or another broker) is configured",
)
def test_it_is_the_broker_celery_uses_on_the_embedded_default():
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, nanoweb.broker.Transport)


def test_a_message_being_written_is_invisible_to_the_worker(channel, monkeypatch):
    seen_while_writing = []
    real = nanoweb.broker.str_to_bytes

    def while_writing(text):
        try:  # what a worker polling right now would take from the folder
            seen_while_writing.append(channel._get("celery"))
        except Empty:
            seen_while_writing.append(None)
        return real(text)

    monkeypatch.setattr(nanoweb.broker, "str_to_bytes", while_writing)
    channel._put("celery", {"task": "first"})
    monkeypatch.undo()

    assert seen_while_writing == [None]
    assert channel._get("celery") == {"task": "first"}


def test_it_reports_a_folder_it_cannot_write(channel, tmp_path):
    channel.data_folder_out = str(tmp_path / "missing")
    with pytest.raises(ChannelError, match="Cannot add file"):
        channel._put("celery", {"task": "lost?"})
