import pytest

from accounts import quotas
from tests.factories import make_route, submit_one


@pytest.fixture
def flash(db):
    return make_route("nano-banana").model


def charged(user, model, micros):
    """Admit one job for ``user`` and settle it at ``micros``, as a finished image would."""
    job = submit_one(model, user)
    assert quotas.settle(job, micros)
    return job
