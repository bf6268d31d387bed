"""The directory: provinces, specialties, facilities, connection points and partnerships, as data the operator edits.

Why data and not code: Vietnam's administrative map changes (provinces merged in 2025) and so do partnerships
between district and central hospitals; an operator edits one YAML file (``directory.file``) and the server picks
it up without a restart, from a file watcher or ``POST /api/directory/reload``. A file that fails any check is
refused whole with a message naming the entry (``facilities[12] (ttyt-x): province 'y' is not listed``), and the
last good directory stays in force, so a typo never empties the map dispatch rings from.

A ``Directory`` is an immutable snapshot; ``DirectorySource`` holds the current one and replaces it atomically.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from .accounts import Account, describe_error

__all__ = [
    "TIERS",
    "ConnectionPoint",
    "Directory",
    "DirectoryError",
    "DirectorySource",
    "Facility",
    "Partnership",
    "Province",
    "Specialty",
    "Tier",
    "account_problems",
    "load_directory",
    "parse_directory",
]

logger = logging.getLogger(__name__)

Tier = Literal["central", "provincial", "district", "commune"]
TIERS: tuple[Tier, ...] = get_args(Tier)
MAX_FILE_BYTES = 8 * 1024 * 1024  # the whole national network is ~2 MB of YAML; anything bigger is a mistake


def _folded(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Id = Annotated[str, BeforeValidator(_folded), StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=160)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Province(_Entry):
    id: Id
    name: Name


class Specialty(_Entry):
    code: Id
    name: Name
    """Vietnamese name, shown by default."""
    name_en: Name


class Facility(_Entry):
    id: Id
    name: Name
    tier: Tier
    province: Id
    specialties: tuple[Id, ...] = ()
    """What its doctors answer for (central hospitals); dispatch rings only hospitals listing the specialty."""


class ConnectionPoint(_Entry):
    id: Id
    facility: Id
    label: Name


class Partnership(_Entry):
    facility: Id
    """A provincial, district or commune facility."""
    partners: tuple[Id, ...] = Field(min_length=1, max_length=32)
    """The central hospitals it calls first, in order."""


class DirectoryError(ValueError):
    """The directory file cannot be used; ``str()`` names the file and the entry."""


_SECTIONS: dict[str, tuple[type[_Entry], str]] = {
    "provinces": (Province, "id"),
    "specialties": (Specialty, "code"),
    "facilities": (Facility, "id"),
    "points": (ConnectionPoint, "id"),
    "partnerships": (Partnership, "facility"),
}


@dataclass(frozen=True)
class Directory:
    """One consistent version of the directory, with the lookups dispatch and the pages need."""

    provinces: dict[str, Province]
    specialties: dict[str, Specialty]
    facilities: dict[str, Facility]
    points: dict[str, ConnectionPoint]
    partnerships: dict[str, tuple[str, ...]]
    version: str
    """First 12 hex digits of the file's SHA-256: which file content is in force."""
    loaded_at: datetime.datetime
    _by_specialty: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def facility(self, facility_id: str) -> Facility | None:
        return self.facilities.get(facility_id)

    def point(self, point_id: str) -> ConnectionPoint | None:
        return self.points.get(point_id)

    def specialty(self, code: str) -> Specialty | None:
        return self.specialties.get(code)

    def partners_of(self, facility_id: str) -> tuple[str, ...]:
        """The central hospitals ``facility_id`` calls first, in the order the operator wrote."""
        return self.partnerships.get(facility_id, ())

    def central_with_specialty(self, code: str) -> tuple[str, ...]:
        """Every central hospital that answers for ``code``, in file order."""
        return self._by_specialty.get(code, ())

    def points_of(self, facility_id: str) -> list[ConnectionPoint]:
        return [p for p in self.points.values() if p.facility == facility_id]

    def public(self) -> dict[str, Any]:
        """The whole directory as the API and the pages see it."""
        return {
            "version": self.version,
            "loadedAt": self.loaded_at.isoformat(timespec="seconds"),
            "provinces": [p.model_dump() for p in self.provinces.values()],
            "specialties": [{"code": s.code, "name": s.name, "nameEn": s.name_en} for s in self.specialties.values()],
            "facilities": [
                {**f.model_dump(), "specialties": list(f.specialties), "partners": list(self.partners_of(f.id))}
                for f in self.facilities.values()
            ],
            "points": [p.model_dump() for p in self.points.values()],
        }


def parse_directory(data: Any, where: str, version: str = "") -> Directory:
    """Check ``data`` (the parsed YAML) entry by entry and across entries; ``DirectoryError`` at the first problem."""
    if not isinstance(data, dict):
        raise DirectoryError(f"{where}: must be a mapping with {', '.join(_SECTIONS)}")
    unknown = sorted(str(k) for k in data if k not in _SECTIONS)
    if unknown:
        raise DirectoryError(f"{where}: unknown section {unknown[0]!r} (sections: {', '.join(_SECTIONS)})")
    parsed: dict[str, dict[str, Any]] = {}
    for section, (model, key) in _SECTIONS.items():
        items = data.get(section) or []
        if not isinstance(items, list):
            raise DirectoryError(f"{where}: {section} must be a list")
        entries: dict[str, Any] = {}
        for number, item in enumerate(items):
            label = item.get(key) if isinstance(item, dict) else None
            at = f"{where}: {section}[{number}]" + (f" ({label})" if isinstance(label, str) else "")
            try:
                entry = model.model_validate(item)
            except ValidationError as exc:
                raise DirectoryError(f"{at}: {describe_error(exc)}") from None
            ident = getattr(entry, key)
            if ident in entries:
                raise DirectoryError(f"{at}: {key} {ident!r} is listed twice")
            entries[ident] = entry
        parsed[section] = entries
    _check_references(parsed, where)
    facilities: dict[str, Facility] = parsed["facilities"]
    by_specialty: dict[str, list[str]] = {}
    for facility in facilities.values():
        if facility.tier == "central":
            for code in facility.specialties:
                by_specialty.setdefault(code, []).append(facility.id)
    return Directory(
        provinces=parsed["provinces"],
        specialties=parsed["specialties"],
        facilities=facilities,
        points=parsed["points"],
        partnerships={p.facility: p.partners for p in parsed["partnerships"].values()},
        version=version,
        loaded_at=datetime.datetime.now(datetime.UTC),
        _by_specialty={code: tuple(ids) for code, ids in by_specialty.items()},
    )


def _check_references(parsed: dict[str, dict[str, Any]], where: str) -> None:
    provinces, specialties, facilities = parsed["provinces"], parsed["specialties"], parsed["facilities"]
    for number, facility in enumerate(facilities.values()):
        at = f"{where}: facilities[{number}] ({facility.id})"
        if facility.province not in provinces:
            raise DirectoryError(f"{at}: province {facility.province!r} is not listed in provinces")
        for code in facility.specialties:
            if code not in specialties:
                raise DirectoryError(f"{at}: specialty {code!r} is not listed in specialties")
    for number, point in enumerate(parsed["points"].values()):
        if point.facility not in facilities:
            raise DirectoryError(f"{where}: points[{number}] ({point.id}): facility {point.facility!r} is not listed")
    for number, partnership in enumerate(parsed["partnerships"].values()):
        at = f"{where}: partnerships[{number}] ({partnership.facility})"
        own = facilities.get(partnership.facility)
        if own is None:
            raise DirectoryError(f"{at}: facility {partnership.facility!r} is not listed")
        if own.tier == "central":
            raise DirectoryError(f"{at}: a central hospital has no partners to call; only lower tiers do")
        if len(set(partnership.partners)) != len(partnership.partners):
            raise DirectoryError(f"{at}: a partner is listed twice")
        for partner in partnership.partners:
            central = facilities.get(partner)
            if central is None:
                raise DirectoryError(f"{at}: partner {partner!r} is not listed in facilities")
            if central.tier != "central":
                raise DirectoryError(f"{at}: partner {partner!r} is a {central.tier} facility, not a central hospital")


def load_directory(path: Path) -> Directory:
    """Read and check the directory file; ``DirectoryError`` naming the file (and entry) otherwise."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise DirectoryError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DirectoryError(f"{path}: not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise DirectoryError(f"{path}: invalid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path}: invalid YAML: {exc}") from None
    return parse_directory(data, str(path), hashlib.sha256(raw).hexdigest()[:12])


def account_problems(directory: Directory, accounts: Iterable[Account]) -> list[str]:
    """Accounts that name a facility or a specialty the directory does not list, one line each."""
    problems = []
    for account in accounts:
        if directory.facility(account.facility_id) is None:
            problems.append(f"account {account.username}: facility {account.facility_id!r} is not in the directory")
        for code in account.specialties:
            if directory.specialty(code) is None:
                problems.append(f"account {account.username}: specialty {code!r} is not in the directory")
    return problems


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class DirectorySource:
    """The directory in force, from one file; reloaded when the file changes or when asked.

    ``reload()`` is all or nothing: the new file replaces the directory only if every check passes, else the
    last good one stays and ``last_error`` says why (the admin API shows it).
    """

    def __init__(self, path: Path, on_change: Callable[[Directory], None] | None = None) -> None:
        self.path = path
        self.current = load_directory(path)
        self.last_error: str | None = None
        self._on_change = on_change
        self._signature = _signature(path)

    def reload(self) -> Directory:
        """Load the file now; ``DirectoryError`` (and the directory in force unchanged) if it is not usable."""
        signature = _signature(self.path)
        try:
            directory = load_directory(self.path)
        except DirectoryError as exc:
            self._signature = signature  # do not retry the same bad file every poll; an edit retries
            self.last_error = str(exc)
            raise
        self._signature = signature
        self.last_error = None
        if directory.version != self.current.version:
            self.current = directory
            logger.info("directory %s loaded: %d facilities, %d points", directory.version,
                        len(directory.facilities), len(directory.points))
            if self._on_change is not None:
                self._on_change(directory)
        return self.current

    def changed_on_disk(self) -> bool:
        return _signature(self.path) != self._signature

    async def watch(self, interval: float) -> None:
        """Poll the file's signature every ``interval`` seconds and reload when it changes (runs until cancelled).

        Polling a stat is cheap and works on every filesystem, editors' rename-on-save included.
        """
        while True:
            await asyncio.sleep(interval)
            if self.changed_on_disk():
                try:
                    self.reload()
                except DirectoryError as exc:
                    logger.error("directory not reloaded, the previous one stays in force: %s", exc)
