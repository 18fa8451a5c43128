"""`make run`'s process runner: start the Procfile's processes and restart any that dies.

honcho (which ran them before) stops every process as soon as one exits, so one crashed
worker took the whole instance down. Here a process that exits on its own is started
again after a pause that doubles with each quick crash (1 s up to 30 s; back to 1 s once
it has run a minute), and the others run on. Ctrl+C or SIGTERM stops them all: each
gets SIGTERM, and SIGKILL if it is still there after ``STOP_GRACE_SECONDS``. Output is
prefixed as honcho prefixed it (``12:00:01 worker.1 | …``). Production runs the same
Procfile lines under systemd units or compose, whose restart policies do this job.

With ``--ready-url`` it prints ``--ready-banner`` (``manage.py serve``'s sign-in lines)
again once that address answers 200, so the way in is the last thing on the screen
rather than scrolled away under the processes' start-up lines.

Run as ``python -m nanoweb.supervise -f Procfile [name …]`` (``manage.py serve`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0  # a process that ran this long starts the backoff afresh
STOP_GRACE_SECONDS = 10.0
READY_WAIT_SECONDS = 120.0


def read_procfile(path: Path) -> dict[str, str]:
    """``name: command`` lines, in order (blank lines and # comments skipped)."""
    entries = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        entries[name.strip()] = command.strip()
    return entries


@dataclass
class Child:
    name: str
    command: str
    popen: subprocess.Popen | None = None
    started: float = 0.0
    delay: float = RESTART_FIRST_SECONDS
    start_at: float = 0.0  # when to start it (again)


class Supervisor:
    def __init__(self, commands: dict[str, str], *, env=None, cwd=None, out=None) -> None:
        self.children = [Child(name, command) for name, command in commands.items()]
        self.env, self.cwd = env, cwd
        self.out = out or sys.stdout
        self.stopping = threading.Event()
        self._write = threading.Lock()
        self._width = max((len(c.name) + 2 for c in self.children), default=0)
        self._width = max(self._width, len("system"))

    def say(self, label: str, line: str) -> None:
        with self._write:
            self.out.write(f"{time.strftime('%H:%M:%S')} {label:<{self._width}} | {line}\n")
            self.out.flush()

    def start(self, child: Child) -> None:
        # exec: the shell becomes the process, so signals reach it; a session of its own,
        # so stopping it stops whatever it forked (a Celery worker's pool).
        child.popen = subprocess.Popen(
            f"exec {child.command}",
            shell=True,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.started = time.monotonic()
        self.say("system", f"{child.name}.1 started (pid={child.popen.pid})")
        threading.Thread(target=self._relay, args=(child, child.popen), daemon=True).start()

    def _relay(self, child: Child, popen: subprocess.Popen) -> None:
        for raw in popen.stdout:
            self.say(f"{child.name}.1", raw.decode(errors="replace").rstrip("\n"))

    def run(self) -> int:
        for child in self.children:
            self.start(child)
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            for child in self.children:
                if child.popen is None:
                    if now >= child.start_at:
                        self.start(child)
                elif (code := child.popen.poll()) is not None:
                    self._schedule_restart(child, code, now)
        return self.stop()

    def _schedule_restart(self, child: Child, code: int, now: float) -> None:
        _signal_group(child.popen, signal.SIGKILL)  # what it forked dies with it (its pool)
        if now - child.started >= HEALTHY_AFTER_SECONDS:
            child.delay = RESTART_FIRST_SECONDS
        self.say(
            "system",
            f"{child.name}.1 exited with code {code}; restarting in {child.delay:.0f} s "
            "(the other processes keep running)",
        )
        child.popen, child.start_at = None, now + child.delay
        child.delay = min(child.delay * 2, RESTART_MAX_SECONDS)

    def stop(self) -> int:
        running = [c for c in self.children if c.popen and c.popen.poll() is None]
        for child in running:  # to the process itself: it stops what it forked, cleanly
            self.say("system", f"sending SIGTERM to {child.name}.1 (pid={child.popen.pid})")
            child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            try:
                child.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.say("system", f"{child.name}.1 did not stop: SIGKILL")
            _signal_group(child.popen, signal.SIGKILL)  # and anything it left behind
            child.popen.wait()
        return 0

    def announce_when_ready(self, url: str, banner: str) -> None:
        """In the background: once ``url`` answers 200, print ``banner`` (line by line)."""

        def wait() -> None:
            deadline = time.monotonic() + READY_WAIT_SECONDS
            while not self.stopping.is_set() and time.monotonic() < deadline:
                if _answers(url):
                    for line in banner.splitlines():
                        self.say("system", line)
                    return
                self.stopping.wait(0.5)

        threading.Thread(target=wait, name="ready-banner", daemon=True).start()

    def handle_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 -- our own
            return response.status == 200
    except OSError:
        return False


def _signal_group(popen: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, sig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--procfile", default="Procfile", type=Path)
    parser.add_argument("-d", "--directory", default=None)
    parser.add_argument("--ready-url", help="print --ready-banner once this answers 200")
    parser.add_argument("--ready-banner", default="", help="the lines to print then")
    parser.add_argument("names", nargs="*", help="the processes to run (default: all)")
    args = parser.parse_args(argv)
    commands = read_procfile(args.procfile)
    if args.names:
        commands = {name: commands[name] for name in args.names}
    supervisor = Supervisor(commands, cwd=args.directory)
    supervisor.handle_signals()
    if args.ready_url and args.ready_banner:
        supervisor.announce_when_ready(args.ready_url, args.ready_banner)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
