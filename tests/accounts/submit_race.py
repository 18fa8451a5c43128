"""One contender process in the admission race: N threads wait for a shared start time,
then each submits one image for the given user; prints accepted and refused counts."""

import os
import sys
import threading
import time


def main(user_id: int, model_slug: str, threads: int, start_at: float) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoweb.settings")
    import django

    django.setup()
    from django.db import connection

    from accounts.models import User
    from generations import jobs, queue
    from generations.models import ModelSpec
    from tests.factories import job_request

    queue.enqueue = lambda ids: None  # admission only
    user, model = User.objects.get(pk=user_id), ModelSpec.objects.get(slug=model_slug)
    connection.close()
    barrier = threading.Barrier(threads)
    counts = {"accepted": 0, "refused": 0, "error": 0}
    lock = threading.Lock()

    def attempt():
        barrier.wait()
        time.sleep(max(0.0, start_at - time.time()))
        try:
            jobs.submit(user, job_request(model))
            outcome = "accepted"
        except jobs.SubmitError:
            outcome = "refused"
        except Exception as exc:  # noqa: BLE001 - reported and failed by the test
            print(repr(exc), file=sys.stderr)
            outcome = "error"
        finally:
            connection.close()
        with lock:
            counts[outcome] += 1

    pool = [threading.Thread(target=attempt) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(counts["accepted"], counts["refused"], counts["error"])


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
