"""The directory: the shipped sample, lookups, every kind of bad file refused with the entry named (and the last
good directory kept), reload from the watcher and from the admin API, and start-up refusals."""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ACCOUNTS, ROOT, Server, wait_for, write_accounts

from signaling.accounts import load_accounts_file
from signaling.directory import DirectoryError, DirectorySource, account_problems, load_directory, parse_directory

SAMPLE = ROOT / "directory.yaml"


def sample() -> dict[str, Any]:
    return yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_sample_directory_is_realistic() -> None:
    directory = load_directory(SAMPLE)
    central = {f.id for f in directory.facilities.values() if f.tier == "central"}
    assert {"bv-bach-mai", "bv-cho-ray", "bv-viet-duc", "bv-tw-hue", "bv-nhi-tw"} <= central
    assert directory.facility("bv-cho-ray").name == "Bệnh viện Chợ Rẫy"  # type: ignore[union-attr]
    tiers = {f.tier for f in directory.facilities.values()}
    assert tiers == {"central", "provincial", "district", "commune"}
    lower = {f.province for f in directory.facilities.values() if f.tier in ("district", "commune")}
    assert len(lower) >= 5  # several provinces
    assert max(len(p) for p in directory.partnerships.values()) == 8  # one district works with eight hospitals
    # lookups
    assert directory.partners_of("ttyt-muong-te")[:3] == ("bv-bach-mai", "bv-viet-duc", "bv-nhi-tw")
    assert directory.partners_of("bv-bach-mai") == ()
    assert "bv-nhi-tw" in directory.central_with_specialty("nhi")
    assert "bv-k" not in directory.central_with_specialty("nhi")
    assert directory.central_with_specialty("khong-co") == ()
    assert {p.facility for p in directory.points_of("ttyt-muong-te")} == {"ttyt-muong-te"}
    assert directory.point("ttyt-muong-te-cc").label == "Khoa Cấp cứu"  # type: ignore[union-attr]
    assert len(directory.version) == 12


def test_shipped_and_test_accounts_name_facilities_of_the_sample(tmp_path: Path) -> None:
    directory = load_directory(SAMPLE)
    for path in (ROOT / "accounts.example.yaml", write_accounts(tmp_path)):
        assert account_problems(directory, [e.account() for e in load_accounts_file(path)]) == []


def edit(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(sample())
    change(data)
    return data


def facility(data: dict[str, Any], facility_id: str) -> dict[str, Any]:
    return next(f for f in data["facilities"] if f["id"] == facility_id)


BAD: list[tuple[str, Any, str]] = [
    ("not a mapping", lambda d: d.clear() or d.update({"provinces": "x"}), "provinces must be a list"),
    ("unknown section", lambda d: d.update({"hospitals": []}), "unknown section 'hospitals'"),
    ("bad tier", lambda d: facility(d, "ttyt-muong-te").update(tier="huyen"),
     "facilities[18] (ttyt-muong-te): tier: Input should be 'central'"),
    ("unknown field", lambda d: facility(d, "bv-k").update(phone="024"), "facilities[5] (bv-k): phone"),
    ("id with accents", lambda d: facility(d, "bv-k").update(id="bv-kê"), "(bv-kê): id: use letters without accents"),
    ("unknown province", lambda d: facility(d, "ttyt-sin-ho").update(province="lai-chau-moi"),
     "facilities[19] (ttyt-sin-ho): province 'lai-chau-moi' is not listed in provinces"),
    ("unknown specialty", lambda d: facility(d, "bv-k").update(specialties=["ung-buou", "phong-xa"]),
     "facilities[5] (bv-k): specialty 'phong-xa' is not listed in specialties"),
    ("duplicate facility", lambda d: d["facilities"].append(dict(facility(d, "bv-e"))),
     "(bv-e): id 'bv-e' is listed twice"),
    ("point of unknown facility", lambda d: d["points"].append({"id": "x-1", "facility": "bv-x", "label": "A"}),
     "(x-1): facility 'bv-x' is not listed"),
    ("partner not central", lambda d: d["partnerships"][0]["partners"].append("bvdk-lai-chau"),
     "partnerships[0] (ttyt-muong-te): partner 'bvdk-lai-chau' is a provincial facility, not a central hospital"),
    ("central with partners", lambda d: d["partnerships"].append({"facility": "bv-k", "partners": ["bv-e"]}),
     "(bv-k): a central hospital has no partners"),
    ("partner twice", lambda d: d["partnerships"][1]["partners"].append("bv-bach-mai"),
     "partnerships[1] (ttyt-sin-ho): a partner is listed twice"),
    ("no partners", lambda d: d["partnerships"][1].update(partners=[]), "partnerships[1] (ttyt-sin-ho): partners"),
    ("number for a name", lambda d: d["specialties"][0].update(name=12), "specialties[0] (tim-mach): name"),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in BAD], ids=[n for n, _, _ in BAD])
def test_bad_directory_names_the_entry(change: Any, expected: str) -> None:
    with pytest.raises(DirectoryError) as caught:
        parse_directory(edit(change), "directory.yaml")
    assert expected in str(caught.value) and str(caught.value).startswith("directory.yaml: ")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"facilities: [\n  {id: a\n", "invalid YAML at line"),
        (b"\xff\xfe not utf-8", "not UTF-8 text"),
        (b"- just\n- a list\n", "must be a mapping"),
        (b"#" * (8 * 1024 * 1024 + 1), "larger than 8 MB"),
    ],
    ids=["yaml", "encoding", "list", "huge"],
)
def test_unreadable_file_is_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "directory.yaml"
    path.write_bytes(content)
    with pytest.raises(DirectoryError, match=expected):
        load_directory(path)
    with pytest.raises(DirectoryError, match="cannot read"):
        load_directory(tmp_path / "absent.yaml")


def write_directory(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically, as an editor saving it does (a new inode: the watcher sees it at once)."""
    temp = path.with_suffix(".tmp")
    temp.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    os.replace(temp, path)


async def test_source_reloads_on_change_and_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    write_directory(path, sample())
    seen: list[str] = []
    source = DirectorySource(path, on_change=lambda d: seen.append(d.version))
    first = source.current
    watcher = asyncio.create_task(source.watch(0.02))
    try:
        renamed = edit(lambda d: facility(d, "ttyt-muong-te").update(name="Trung tâm Y tế khu vực Mường Tè"))
        write_directory(path, renamed)
        await wait_for(lambda: source.current.version != first.version, timeout=5)
        assert source.current.facility("ttyt-muong-te").name == "Trung tâm Y tế khu vực Mường Tè"  # type: ignore[union-attr]
        good = source.current
        write_directory(path, edit(lambda d: facility(d, "ttyt-muong-te").update(province="khong-co")))
        await wait_for(lambda: source.last_error is not None, timeout=5)
        assert "(ttyt-muong-te): province 'khong-co'" in source.last_error  # type: ignore[operator]
        assert source.current is good  # the last good directory stays in force
        with pytest.raises(DirectoryError):
            source.reload()
        assert source.current is good
        write_directory(path, sample())  # fixed: back in force, error cleared
        await wait_for(lambda: source.current.version == first.version, timeout=5)
        assert source.last_error is None and seen == [good.version, first.version]
    finally:
        watcher.cancel()


# ----------------------------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server on its own copy of the sample directory, watching it every 0.2 s."""
    tmp = tmp_path_factory.mktemp("edited")
    path = tmp / "directory.yaml"
    write_directory(path, sample())
    srv = Server(tmp, env={"HOICHAN_DIRECTORY__FILE": str(path), "HOICHAN_DIRECTORY__RELOAD_SECONDS": "0.2"})
    srv.start()
    yield srv, path
    srv.stop()


async def test_directory_api_and_reload_without_restart(edited: tuple[Server, Path]) -> None:
    server, path = edited
    status, body = await server.get("/api/directory", user="doctor")
    assert status == 200 and "file" not in body and "lastError" not in body  # operators' details: admins only
    assert {"version", "provinces", "specialties", "facilities", "points"} <= set(body)
    muong_te = next(f for f in body["facilities"] if f["id"] == "ttyt-muong-te")
    assert muong_te["tier"] == "district" and len(muong_te["partners"]) == 8
    version = body["version"]

    # an edit is picked up by the watcher, no restart
    write_directory(path, edit(lambda d: d["points"].append(
        {"id": "ttyt-muong-te-xa", "facility": "ttyt-muong-te", "label": "Xe cấp cứu lưu động"})))

    async def points() -> set[str]:
        return {p["id"] for p in (await server.get("/api/directory", user="admin"))[1]["points"]}

    for _ in range(100):
        if "ttyt-muong-te-xa" in await points():
            break
        await asyncio.sleep(0.1)
    assert "ttyt-muong-te-xa" in await points()
    _, good = await server.get("/api/directory", user="admin")
    assert good["version"] != version and good["lastError"] is None and good["file"] == str(path)

    # a broken edit: refused by the watcher and by the API, naming the entry; the previous directory stays
    write_directory(path, edit(lambda d: d["partnerships"][0]["partners"].append("ttyt-sin-ho")))
    for _ in range(100):
        if (await server.get("/api/directory", user="admin"))[1]["lastError"]:
            break
        await asyncio.sleep(0.1)
    _, after = await server.get("/api/directory", user="admin")
    assert "partnerships[0] (ttyt-muong-te): partner 'ttyt-sin-ho' is a district facility" in after["lastError"]
    assert after["version"] == good["version"] and "ttyt-muong-te-xa" in await points()  # the last good one
    admin = await server.login("admin")
    status, refused = await server.request("POST", "/api/directory/reload", token=admin)
    assert status == 422 and refused["error"]["code"] == "invalid-directory"
    assert "partner 'ttyt-sin-ho'" in refused["error"]["message"] and good["version"] in refused["error"]["message"]
    assert (await server.get("/api/directory", user="admin"))[1]["version"] == good["version"]

    # a valid edit that leaves an account without its facility: in force, and the answer warns about the account
    write_directory(path, edit(lambda d: d["facilities"].remove(facility(d, "so-y-te-lai-chau"))))
    status, loaded = await server.request("POST", "/api/directory/reload", token=admin)
    assert status == 200 and loaded["counts"]["facilities"] == len(sample()["facilities"]) - 1
    assert loaded["warnings"] == ["account quantri: facility 'so-y-te-lai-chau' is not in the directory"]
    write_directory(path, sample())
    status, loaded = await server.request("POST", "/api/directory/reload", token=admin)
    assert status == 200 and loaded["version"] == version and loaded["warnings"] == []


def serve(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``hoichan serve`` expected to refuse to start: its exit code and message."""
    server = Server(tmp, env=env)
    return subprocess.run(
        [sys.executable, "-m", "signaling.cli", "serve"], cwd=ROOT, env=server.env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_server_refuses_to_start_on_a_bad_directory(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    write_directory(path, edit(lambda d: facility(d, "bv-viet-duc").update(specialties=["ngoai-khoa-x"])))
    done = serve(tmp_path, {"HOICHAN_DIRECTORY__FILE": str(path)})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"config error: directory.file: {path}: facilities[1] (bv-viet-duc): specialty 'ngoai-khoa-x' "
        "is not listed in specialties"
    )


def test_accounts_file_naming_an_unknown_facility_is_refused_whole(tmp_path: Path) -> None:
    entries = yaml.safe_load(write_accounts(tmp_path).read_text(encoding="utf-8"))
    entries[2]["facility"] = "ttyt-khong-co"
    accounts = tmp_path / "edited-accounts.yaml"
    accounts.write_text(yaml.safe_dump(entries, allow_unicode=True), encoding="utf-8")
    done = serve(tmp_path, {"HOICHAN_AUTH__ACCOUNTS_FILE": str(accounts)})
    assert done.returncode == 2
    assert f"config error: auth.accounts_file: {accounts}: account {ACCOUNTS['doctor']['username']}: facility " \
           "'ttyt-khong-co' is not in the directory" == done.stderr.strip()
    # nothing was merged: not even the valid entries before it
    listed = subprocess.run(
        [sys.executable, "-m", "signaling.cli", "user", "list"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "HOICHAN_STORE__PATH": str(tmp_path / "data")}, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and ACCOUNTS["admin"]["username"] not in listed.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--facility", "bv-khong-co"], "facility 'bv-khong-co' is not in the directory"),
        (["--facility", "bv-bach-mai", "--specialty", "tim-mach", "--specialty", "chiem-tinh"],
         "specialty 'chiem-tinh' is not in the directory"),
    ],
)  # fmt: skip
def test_cli_refuses_an_unknown_facility_or_specialty(tmp_path: Path, args: list[str], expected: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "signaling.cli", "user", "add", "bs.moi", "--role", "doctor", "--name", "BS. Mới",
         *args, "--password-stdin"],
        cwd=ROOT, input="mat-khau-dau-tien\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOICHAN_STORE__PATH": str(tmp_path / "data")},
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip() == f"hoichan user add: {expected}"
