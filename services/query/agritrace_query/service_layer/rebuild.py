"""Rebuilding the read model from the source services' event logs (after losing it, or after
a change to how it is built): empty it, then replay each source's log through the same
projections the live handlers use, a page per transaction.

Each page commits with the position reached, so an interrupted rebuild resumes where it
stopped. Live events may keep arriving meanwhile: the inbox is shared, so whichever of the
live handler and the replay sees an event first applies it and the other drops it, and the
projections do not care in which order events come. The query log is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agritrace_query.service_layer.projection_ports import (
    EventLog,
    OriginCache,
    ProjectionUnitOfWork,
    ReplayPosition,
    Touched,
)
from agritrace_query.service_layer.projections import (
    CONSUMER,
    PROJECTIONS,
    SOURCES,
    Clock,
    invalidate,
    project,
    utc_now,
)

DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Progress:
    """Where the replay of one source stands after a page (or when it was found finished)."""

    source: str
    position: int  # of the last event replayed
    newest_position: int  # of the newest event in the source's log when the page was read
    applied: int  # events of this run applied to the read model
    skipped: int  # events of this run already handled (live) or not projected
    done: bool


@dataclass(frozen=True)
class RebuildResult:
    restarted: bool  # the read model was emptied by this run (else it resumed)
    progress: dict[str, Progress]


class Rebuild:
    def __init__(self, uow_factory: Callable[[], ProjectionUnitOfWork], log: EventLog,
                 cache: OriginCache, clock: Clock = utc_now,
                 page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self._uow_factory = uow_factory
        self._log = log
        self._cache = cache
        self._clock = clock
        self._page_size = page_size

    def run(self, sources: Sequence[str] = SOURCES, *, restart: bool = False,
            progress: Callable[[Progress], None] = lambda _: None) -> RebuildResult:
        """Replays `sources` (default all). Starts afresh — emptying the read model — when
        asked to, or when no rebuild is under way; else resumes the one under way. A fresh
        rebuild is under way until every source was replayed, by this run or later ones."""
        unknown = sorted(set(sources) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown source(s) {', '.join(unknown)}; "
                             f"sources are {', '.join(SOURCES)}")
        with self._uow_factory() as uow:
            positions = uow.projections.replay_positions()
        under_way = any(not position.done for position in positions.values())
        restarted = restart or not under_way
        if restarted:
            positions = self._start()
        reached: dict[str, Progress] = {}
        for source in dict.fromkeys(sources):
            start = positions.get(source) or ReplayPosition(source, 0, "", False)
            if start.done:
                reached[source] = Progress(source, start.position, start.position, 0, 0, True)
                progress(reached[source])
                continue
            reached[source] = self._replay(start, progress)
        return RebuildResult(restarted, reached)

    def _start(self) -> dict[str, ReplayPosition]:
        fresh = {source: ReplayPosition(source, 0, "", False) for source in SOURCES}
        with self._uow_factory() as uow:
            uow.projections.clear(CONSUMER)
            for position in fresh.values():
                uow.projections.save_replay_position(position, self._clock())
            uow.commit()
        # After the commit: a view cached from the old read model must not outlive it.
        self._cache.clear()
        return fresh

    def _replay(self, start: ReplayPosition,
                progress: Callable[[Progress], None]) -> Progress:
        source, position, token = start.source, start.position, start.page_token
        applied = skipped = 0
        while True:
            page = self._log.list_events(source, token, self._page_size)
            touched = Touched()
            with self._uow_factory() as uow:
                for logged in page.events:
                    event = logged.event
                    if logged.position <= position:  # a page read again after a restart
                        continue
                    position = logged.position
                    if (event.source, event.name) in PROJECTIONS \
                            and uow.events.claim(CONSUMER, event.event_id):
                        touched.update(project(event, uow.projections))
                        applied += 1
                    else:
                        skipped += 1
                done = not page.next_page_token
                # The last token that leads on: resuming with it reads only later events.
                token = page.next_page_token or token
                uow.projections.save_replay_position(
                    ReplayPosition(source, position, token, done), self._clock())
                uow.commit()
            invalidate(self._cache, touched)
            reached = Progress(source, position, max(page.newest_position, position),
                               applied, skipped, done)
            progress(reached)
            if done:
                return reached
