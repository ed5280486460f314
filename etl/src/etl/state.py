"""The worker's memory between passes: per stream a watermark — the (changed_at, key) of the last
row billing accepted — plus the rows delivered within the look-back window, so re-reading that
window (to catch late commits) sends nothing twice. Kept in one JSON file, replaced atomically."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VERSION = 1


def _iso(moment: datetime) -> str:
    # Fixed width (always microseconds, always UTC), so the strings also compare as times.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class StreamState:
    # (changed_at, key) of the newest row delivered; None before the first delivery.
    watermark: tuple[datetime, str] | None = None
    # key -> changed_at (ISO, UTC) of rows delivered (or rejected) within the look-back window.
    delivered: dict[str, str] = field(default_factory=dict)
    # key -> what billing answered, for rows it refused (4xx); kept until the row changes again.
    rejected: dict[str, dict] = field(default_factory=dict)

    def read_from(self, lookback: timedelta) -> datetime:
        """Where the next pass starts reading: the look-back window behind the watermark."""
        if self.watermark is None:
            return EPOCH
        return max(EPOCH, self.watermark[0] - lookback)

    def already_delivered(self, key: str, changed_at: datetime) -> bool:
        return self.delivered.get(key) == _iso(changed_at)

    def record(self, key: str, changed_at: datetime) -> None:
        """The row billing accepted (or refused for good): move the watermark over it."""
        self.delivered[key] = _iso(changed_at)
        self.rejected.pop(key, None)
        position = (changed_at.astimezone(UTC), key)
        if self.watermark is None or _order(position) > _order(self.watermark):
            self.watermark = position

    def reject(self, key: str, changed_at: datetime, answer: dict) -> None:
        """Billing refused the row (4xx): move on, remember why; a later change retries it."""
        self.record(key, changed_at)
        self.rejected[key] = {"changed_at": _iso(changed_at), **answer}

    def forget_older_than(self, lookback: timedelta) -> None:
        """Drop delivered rows that no pass can read again (behind the look-back window)."""
        horizon = _iso(self.read_from(lookback))
        self.delivered = {k: ts for k, ts in self.delivered.items() if ts >= horizon}

    def to_json(self) -> dict:
        return {
            "watermark": None
            if self.watermark is None
            else {"changed_at": _iso(self.watermark[0]), "key": self.watermark[1]},
            "delivered": dict(sorted(self.delivered.items(), key=lambda item: item[1])),
            "rejected": self.rejected,
        }

    @classmethod
    def from_json(cls, data: dict) -> StreamState:
        mark = data.get("watermark")
        return cls(
            watermark=None
            if not mark
            else (datetime.fromisoformat(mark["changed_at"]), str(mark["key"])),
            delivered=dict(data.get("delivered") or {}),
            rejected=dict(data.get("rejected") or {}),
        )


def _order(position: tuple[datetime, str]) -> tuple[datetime, int | str]:
    # Deletion keys are integers: compare them as numbers, as the database does.
    moment, key = position
    return (moment, int(key)) if key.isdigit() else (moment, key)


class StateStore:
    """Loads and saves the state file; a missing file is an empty state (copy everything)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, StreamState]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        if raw.get("version") != VERSION:
            raise ValueError(f"{self.path}: unknown state version {raw.get('version')!r}")
        return {name: StreamState.from_json(data) for name, data in raw["streams"].items()}

    def save(self, streams: dict[str, StreamState]) -> None:
        """Write to a temporary file in the same folder, fsync, then rename over the old file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": VERSION,
            "saved_at": _iso(datetime.now(UTC)),
            "streams": {name: state.to_json() for name, state in streams.items()},
        }
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
