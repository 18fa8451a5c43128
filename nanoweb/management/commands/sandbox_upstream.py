"""Serve the sandbox upstream (a Gemini and OpenAI Images test double) until Ctrl-C."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generations.sandbox.server import SandboxConfig, make_server
from generations.sandbox.specs import MODELS

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
}


def parse_latency(value: str) -> tuple[float, float]:
    """ "0.5-2.0" → (0.5, 2.0); "1" → (1.0, 1.0)."""
    low, _, high = value.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise CommandError(
            f"--latency wants seconds or a range like 0.5-2.0, not {value!r}"
        ) from None
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
        "generateContent and models API and OpenAI's Images API, renders placeholder "
        "images locally and injects faults on demand."
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
            "  A test double of the Gemini and OpenAI Images APIs: images are rendered locally, "
            "nothing reaches a real model.\n"
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
            server.server_close()
        self.stdout.write("Sandbox upstream stopped.")

    def build_config(self, options: dict) -> SandboxConfig:
        low, high = parse_latency(options["latency"])
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
        if config.hidden_models:
            count = sum(len(models) for models in config.hidden_models.values())
            limits.append(f"{count} model(s) hidden from {len(config.hidden_models)} key(s)")
        return "; ".join(limits)
