"""The informer (list-then-watch) against a server with real watch semantics, through the real client.

The server is `tests.support.watch_server.WatchServer` (kmock keeps no history and never answers 410), the
client is `controller.kube.KubeClient` (the official ``kubernetes`` client over HTTP), the loop is
`controller.informer.Informer`. Semantics checked, from the API concepts page
(https://kubernetes.io/docs/reference/using-api/api-concepts/): "Efficient detection of changes" (a
watch from a compacted resourceVersion fails with 410 Gone and the client must list again and watch from
the list's version), "Watch bookmarks" (a BOOKMARK carries only a resourceVersion) and "Retrieving large
results sets in chunks" (an expired ``continue`` token answers 410 Gone; the list starts over).

Covers:
- a 410 Gone on the watch, as an ERROR event and as the HTTP status: the informer lists again and ends
  with exactly the server's objects, with the objects added, changed and deleted during the gap reported
  to ``on_change`` (the deleted one disappears: nothing missed, no ghost), and watches on from the new
  list's resourceVersion;
- a 410 Gone on a list continuation: the list starts over and the cache is the server's;
- bookmarks move the resourceVersion on without touching the cache or waking anyone, and a watch that
  resumes from a bookmarked version after a compaction needs no relist;
- a dropped connection resumes from the last resourceVersion without a list, and nothing is missed;
- failing watches are retried with a bounded, growing backoff (no hot loop, never beyond the cap), and
  repeated 410s do not turn into a tight list loop either.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from songbird.controller.informer import BACKOFF_MAX, BACKOFF_MIN, Informer
from songbird.controller.kube import KubeClient
from songbird.controller.ports import Kind
from tests.support.watch_server import ExpiryStyle, WatchServer

pytestmark = pytest.mark.slow

Key = tuple[str, str]


class Changes:
    """What the informer reported to ``on_change``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.keys: list[Key] = []

    def __call__(self, kind: Kind, namespace: str, name: str) -> None:
        with self._lock:
            self.keys.append((namespace, name))

    def take(self) -> set[Key]:
        with self._lock:
            found, self.keys = set(self.keys), []
            return found


@contextmanager
def informing(server: WatchServer, *, page_size: int = 2) -> Iterator[tuple[Informer, Changes]]:
    client = KubeClient.for_host(server.url)
    changes = Changes()
    informer = Informer(
        client, Kind.CONFIGMAP, None, on_change=changes, watch_timeout=30, page_size=page_size
    )
    informer.start()
    try:
        assert informer.wait_synced(5), informer.error
        assert server.wait(lambda: server.open_watches == 1)
        yield informer, changes
    finally:
        informer.stop()
        server.drop()
        client.close()


def cached(informer: Informer) -> dict[Key, dict[str, object]]:
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in informer.store.objects()}


def same_as_server(informer: Informer, server: WatchServer) -> bool:
    return cached(informer) == server.objects()


def seeded(server: WatchServer) -> None:
    server.put("team-a", "alpha", {"v": "1"})
    server.put("team-a", "bravo", {"v": "1"})
    server.put("team-b", "charlie", {"v": "1"})


@pytest.mark.parametrize("expiry", ["event", "http"])
def test_a_410_relists_and_the_cache_ends_with_exactly_the_servers_objects(expiry: ExpiryStyle) -> None:
    with WatchServer(expiry=expiry) as server:
        seeded(server)
        with informing(server) as (informer, changes):
            assert same_as_server(informer, server)
            assert changes.take() == {("team-a", "alpha"), ("team-a", "bravo"), ("team-b", "charlie")}
            with server.gap():
                server.put("team-a", "alpha", {"v": "2"})  # changed while no watch was open
                server.delete("team-a", "bravo")  # deleted: must not stay as a ghost
                server.put("team-b", "delta", {"v": "1"})  # added
                server.compact()  # the history of the gap is gone: resuming needs a 410 and a list
            assert server.wait(lambda: informer.lists == 2 and same_as_server(informer, server))
            assert ("team-a", "bravo") not in cached(informer)
            assert cached(informer)[("team-a", "alpha")]["data"] == {"v": "2"}
            assert changes.take() == {("team-a", "alpha"), ("team-a", "bravo"), ("team-b", "delta")}
            # It watches on from the new list's version: a later change arrives without another list.
            listed_at = server.version
            assert server.wait(lambda: informer.resource_version == str(listed_at))
            assert server.wait(lambda: server.open_watches == 1)
            assert server.seen("watch")[-1].query["resourceVersion"] == str(listed_at)
            server.put("team-b", "charlie", {"v": "2"})
            assert server.wait(lambda: same_as_server(informer, server))
            assert informer.lists == 2
            assert changes.take() == {("team-b", "charlie")}


def test_a_410_on_a_list_continuation_starts_the_list_over() -> None:
    with WatchServer() as server:
        seeded(server)
        server.put("team-c", "echo", {"v": "1"})
        with informing(server, page_size=2) as (informer, _):
            with server.gap():
                server.delete("team-a", "alpha")
                server.put("team-c", "foxtrot", {"v": "1"})
                server.compact()
                server.expire_continuations(1)  # the relist's second page answers 410
            assert server.wait(lambda: informer.lists == 2 and same_as_server(informer, server))
            pages = [r.query.get("continue", "") for r in server.seen("list")]
            # first list: page, continuation; the relist: page, expired continuation, then all over again
            assert [bool(p) for p in pages] == [False, True, False, True, False, True]
            assert ("team-a", "alpha") not in cached(informer)


def test_bookmarks_move_the_version_on_and_leave_the_cache_alone() -> None:
    with WatchServer() as server:
        seeded(server)
        with informing(server) as (informer, changes):
            changes.take()
            before = cached(informer)
            server.advance(7)  # writes to other resources
            server.bookmark()
            assert server.wait(lambda: informer.resource_version == str(server.version))
            assert cached(informer) == before
            assert changes.take() == set()
            # Resuming from the bookmarked version survives a compaction of everything before it.
            bookmarked = server.version
            server.compact()
            server.drop()
            assert server.wait(lambda: len(server.seen("watch")) == 2 and server.open_watches == 1)
            assert server.seen("watch")[-1].query["resourceVersion"] == str(bookmarked)
            server.put("team-a", "alpha", {"v": "2"})
            assert server.wait(lambda: same_as_server(informer, server))
            assert informer.lists == 1


def test_a_dropped_connection_resumes_from_the_last_version_without_a_list() -> None:
    with WatchServer() as server:
        seeded(server)
        with informing(server) as (informer, changes):
            changes.take()
            last = informer.resource_version
            with server.gap():
                server.put("team-a", "alpha", {"v": "2"})
                server.delete("team-b", "charlie")
                server.put("team-b", "delta", {"v": "1"})
            assert server.wait(lambda: same_as_server(informer, server))
            assert informer.lists == 1
            assert [r.query["resourceVersion"] for r in server.seen("watch")][-1] == last
            assert changes.take() == {("team-a", "alpha"), ("team-b", "charlie"), ("team-b", "delta")}
            # A drop with no gap at all: the next change still arrives.
            server.drop()
            server.put("team-c", "echo", {"v": "1"})
            assert server.wait(lambda: same_as_server(informer, server))
            assert informer.lists == 1


def test_failing_watches_back_off_within_bounds_and_recover() -> None:
    with WatchServer() as server:
        seeded(server)
        with informing(server) as (informer, _):
            failures = 5
            watches_before = len(server.seen("watch"))
            server.fail_watches(*[500] * failures)
            server.drop()
            assert server.wait(lambda: len(server.seen("watch")) >= watches_before + failures + 1, 15)
            assert server.wait(lambda: server.open_watches == 1)
            times = [r.at for r in server.seen("watch")[watches_before:]]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert len(gaps) == failures
            for k, gap in enumerate(gaps):
                # jittered in [0.5, 1] x the backoff, which doubles per failure (one more doubling when
                # the drop itself was seen as a failure) and never exceeds the cap
                assert gap >= 0.5 * BACKOFF_MIN - 0.02, gaps
                assert gap <= min(BACKOFF_MIN * 2 ** (k + 1), BACKOFF_MAX) + 0.25, gaps
            assert gaps[-1] > gaps[0], gaps  # it grows
            assert informer.error  # the readiness probe reports the failures while the stream is open again
            server.put("team-a", "alpha", {"v": "2"})
            assert server.wait(lambda: same_as_server(informer, server))
            assert informer.lists == 1  # a 500 is not a 410: no relist
            # The first event on the reopened stream clears the error: readiness does not wait for the
            # stream to end (up to the watch timeout) to say the API is back.
            assert informer.error == ""


def test_repeated_410s_do_not_spin_into_a_list_loop() -> None:
    with WatchServer(expiry="http") as server:
        seeded(server)
        with informing(server) as (informer, _):
            server.fail_watches(*[410] * 6)  # every relist's watch expires again, six times over
            server.drop()
            assert server.wait(lambda: informer.lists == 7 and server.open_watches == 1, 30)
            starts = [r.at for r in server.seen("list")[1:] if not r.query.get("continue")]
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            assert len(gaps) == 5, gaps  # six relists after the first list
            # the first relist follows the first 410 at once; the ones after wait out a growing backoff
            assert all(gap >= 0.5 * BACKOFF_MIN - 0.02 for gap in gaps), gaps
            assert sum(gaps) >= 1.0, gaps
            assert all(gap <= BACKOFF_MAX + 0.25 for gap in gaps), gaps
            assert same_as_server(informer, server)
