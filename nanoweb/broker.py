"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu writes a message file in place, so a worker polling the folder can pick up a
file that exists but is still empty and fails to decode it — which stops the whole
worker. Here each message is written under a name the worker ignores and renamed
into the queue only when complete (``os.replace`` is atomic on one filesystem).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: kombu only takes "<stamp>_<id>.<queue>.msg" from the folder.
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
