"""What is made and how, split by concept:

* :mod:`.upstreams` — ModelSpec (with its life cycle), Provider, ProviderKey, Route, Price;
* :mod:`.jobs` — Generation, Upload, Batch, Attempt, IdempotencyKey, WebhookDelivery,
  DuplicateOffer;
* :mod:`.images` — Image;
* :mod:`.resilience` — KeyPermit, RouteCircuit (the database store's state);
* :mod:`.notices` — Notice.
"""

from generations.models.images import Image, ImageQuerySet
from generations.models.jobs import (
    Attempt,
    Batch,
    DuplicateOffer,
    Generation,
    GenerationQuerySet,
    IdempotencyKey,
    Upload,
    WebhookDelivery,
)
from generations.models.notices import Notice, NoticeQuerySet
from generations.models.resilience import KeyPermit, RouteCircuit
from generations.models.upstreams import (
    ALL_ASPECT_RATIOS,
    ASPECT_RATIOS,
    EXTRA_ASPECT_RATIOS,
    ModelSpec,
    ModelSpecQuerySet,
    Price,
    Provider,
    ProviderKey,
    ProviderKeyQuerySet,
    Route,
    RouteQuerySet,
)

__all__ = [
    "ALL_ASPECT_RATIOS",
    "ASPECT_RATIOS",
    "EXTRA_ASPECT_RATIOS",
    "Attempt",
    "DuplicateOffer",
    "Batch",
    "Generation",
    "GenerationQuerySet",
    "IdempotencyKey",
    "Image",
    "ImageQuerySet",
    "KeyPermit",
    "ModelSpec",
    "ModelSpecQuerySet",
    "Notice",
    "NoticeQuerySet",
    "Price",
    "Provider",
    "ProviderKey",
    "ProviderKeyQuerySet",
    "Route",
    "RouteCircuit",
    "RouteQuerySet",
    "Upload",
    "WebhookDelivery",
]
