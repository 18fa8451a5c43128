"""Serve the sandbox upstream (a test double of Gemini, OpenAI Images, fal.ai's queue,
Replicate's predictions and an OpenAI-compatible chat relay) until Ctrl-C."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generations.sandbox.server import SandboxConfig, make_server
from generations.sandbox.specs import MODELS
from generations.sandbox.state import CHAT_IMAGE_STYLES

# --rate-<flag> → fault class
RATE_FLAGS = {
    "429": "rate_limit",
    "daily": "daily_quota",
    "503": "unavailable",
    "500": "internal",
    "region": "region",
    "504": "deadline",
    "timeout": "timeout",
    "malformed": "malformed",
    "truncated": "truncated",
    "blocked": "prompt_block",
    "image-safety": "image_safety",
    "no-image": "no_image",
    "text-only": "text_only",
    "credit": "out_of_credit",
    "saturated": "saturated",
    "slow-queue": "slow_queue",
    "capacity": "capacity",
}


def parse_latency(value: str, flag: str = "--latency") -> tuple[float, float]:
    """ "0.5-2.0" → (0.5, 2.0); "1" → (1.0, 1.0)."""
    low, _, high = value.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise CommandError(f"{flag} wants seconds or a range like 0.5-2.0, not {value!r}") from None
    return bounds


def parse_hidden_models(pairs: list[str]) -> dict[str, frozenset[str]]:
    """["k1=m1", "k1=m2", "k2=m1"] → {"k1": {"m1", "m2"}, "k2": {"m1"}}."""
    hidden: dict[str, set[str]] = {}
    for pair in pairs:
        key, sep, model = pair.partition("=")
        key, model = key.strip(), model.strip().removeprefix("models/")
        if not sep or not key or not model:
            raise CommandError(f"--hide-model wants KEY=MODEL, not {pair!r}")
        if model not in MODELS:
            known = ", ".join(MODELS)
            raise CommandError(f"--hide-model: the sandbox serves no {model!r} (it has {known})")
        hidden.setdefault(key, set()).add(model)
    return {key: frozenset(models) for key, models in hidden.items()}


class Command(BaseCommand):
    help = (
        "Run the Sandbox (offline) upstream: a test double that speaks Google's Gemini "
        "generateContent and models API, OpenAI's Images API, fal.ai's queue (/fal), "
        "Replicate's predictions (/replicate/v1) and a chat-completions relay, renders "
        "placeholder images locally and injects faults on demand."
    )
    # The sandbox touches no models, URLs or templates: it starts even when the
    # project around it would not pass its checks.
    requires_system_checks = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.NANOWEB_SANDBOX_PORT)
        parser.add_argument(
            "--latency", default="0", help="seconds per request, or a range such as 0.5-2.0"
        )
        for flag, fault in RATE_FLAGS.items():
            parser.add_argument(
                f"--rate-{flag}",
                type=float,
                default=0.0,
                dest=f"rate_{fault}",
                metavar="SHARE",
                help=f"share of requests (0..1) answered with {fault}",
            )
        parser.add_argument("--rpm", type=int, help="requests per minute allowed per key")
        parser.add_argument("--daily-quota", type=int, help="requests per UTC day allowed per key")
        parser.add_argument(
            "--invalid-key",
            action="append",
            default=[],
            dest="invalid_keys",
            metavar="KEY",
            help="answer this key with API_KEY_INVALID (repeatable)",
        )
        parser.add_argument(
            "--hide-model",
            action="append",
            default=[],
            dest="hidden_models",
            metavar="KEY=MODEL",
            help="hide MODEL from KEY: not listed, 404 on generateContent and models.get "
            "(repeatable)",
        )
        parser.add_argument(
            "--broke-key",
            action="append",
            default=[],
            dest="broke_keys",
            metavar="KEY",
            help="this key's account is out of credit on every API (repeatable)",
        )
        parser.add_argument(
            "--queue-latency",
            default="0.2-0.5",
            help="seconds one fal/Replicate job runs, or a range such as 0.2-0.5",
        )
        parser.add_argument(
            "--queue-concurrency",
            type=int,
            default=4,
            help="fal/Replicate jobs run at once per API key (the rest wait in line)",
        )
        parser.add_argument(
            "--slow-queue-seconds",
            type=float,
            default=5.0,
            help="what a slow_queue fault adds to a job",
        )
        parser.add_argument(
            "--lose-webhooks",
            type=float,
            default=0.0,
            metavar="SHARE",
            help="share of webhook deliveries (0..1) dropped entirely",
        )
        parser.add_argument(
            "--chat-image-style",
            choices=CHAT_IMAGE_STYLES,
            default="data",
            help="how the chat relay returns the image: markdown data URI, markdown link "
            "to /files, or OpenRouter's message.images",
        )
        parser.add_argument(
            "--file-ttl",
            type=float,
            default=3600.0,
            help="seconds generated files stay at /files (Replicate keeps outputs an hour)",
        )
        parser.add_argument("--seed", type=int, help="seed for repeatable fault draws")
        parser.add_argument(
            "--hang-seconds",
            type=float,
            default=600.0,
            help="how long a timeout fault holds the connection",
        )

    def handle(self, *args, **options) -> None:
        server = make_server(self.build_config(options), options["host"], options["port"])
        self.stdout.write(
            f"Sandbox (offline) upstream listening on {server.base_url}\n"
            "  A test double of the Gemini, OpenAI Images, fal.ai (/fal), Replicate "
            "(/replicate/v1) and chat relay (/v1/chat/completions) APIs: images are rendered "
            "locally, nothing reaches a real model.\n"
            f"  {self.describe(server.config)}\n"
            "  Put [sandbox:503], [sandbox:429x2], ... in a prompt to force a fault. "
            "Ctrl-C stops it."
        )
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.stopping.set()
            server.queue.webhooks.stop()
            server.server_close()
        self.stdout.write("Sandbox upstream stopped.")

    def build_config(self, options: dict) -> SandboxConfig:
        low, high = parse_latency(options["latency"])
        queue_latency = parse_latency(options.get("queue_latency") or "0.2-0.5", "--queue-latency")
        hidden = parse_hidden_models(options.get("hidden_models") or [])
        rates = {f: options[f"rate_{f}"] for f in RATE_FLAGS.values() if options[f"rate_{f}"]}
        try:
            return SandboxConfig(
                latency_min=low,
                latency_max=high,
                rates=rates,
                rpm=options["rpm"],
                daily_quota=options["daily_quota"],
                invalid_keys=frozenset(options["invalid_keys"]),
                hidden_models=hidden,
                seed=options["seed"],
                hang_seconds=options["hang_seconds"],
                broke_keys=frozenset(options.get("broke_keys") or ()),
                queue_latency=queue_latency,
                queue_concurrency=options.get("queue_concurrency", 4),
                slow_queue_seconds=options.get("slow_queue_seconds", 5.0),
                lose_webhooks=options.get("lose_webhooks", 0.0),
                chat_image_style=options.get("chat_image_style", "data"),
                file_ttl=options.get("file_ttl", 3600.0),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def describe(config: SandboxConfig) -> str:
        faults = ", ".join(f"{name} {share:.0%}" for name, share in config.rates.items())
        limits = [
            f"latency {config.latency_min:g}-{config.latency_max:g}s"
            if config.latency_max
            else "no added latency",
            f"faults: {faults or 'none'}",
            f"rpm {config.rpm or 'unlimited'}",
            f"daily quota {config.daily_quota or 'unlimited'}",
        ]
        if config.invalid_keys:
            limits.append(f"{len(config.invalid_keys)} invalid key(s)")
        low, high = config.queue_latency
        limits.append(f"queue {low:g}-{high:g}s x{config.queue_concurrency} per key")
        if config.lose_webhooks:
            limits.append(f"{config.lose_webhooks:.0%} of webhooks lost")
        if config.broke_keys:
            limits.append(f"{len(config.broke_keys)} key(s) out of credit")
        limits.append(f"chat images as {config.chat_image_style}")
        if config.hidden_models:
            count = sum(len(models) for models in config.hidden_models.values())
            limits.append(f"{count} model(s) hidden from {len(config.hidden_models)} key(s)")
        return "; ".join(limits)
