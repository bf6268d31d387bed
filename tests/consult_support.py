"""A consult requested on one signaling process and answered on another, and reading the records back: shared by
the cluster's record tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from support import ACCOUNTS, Server

from client.lobby import LobbyClient

CARDIOLOGY = {"specialty": "tim-mach", "urgency": "routine", "summary": "Nam 58 tuổi, đau ngực trái 2 giờ."}



async def open_lobby(server: Server, alias: str, on_duty: bool | None = None) -> LobbyClient:
    client = LobbyClient(server.url, await server.login(alias), ACCOUNTS[alias]["username"])
    await client.connect()
    await client.enter(on_duty=on_duty)
    return client



async def answered_consult(requested_on: Server, answered_on: Server) -> str:
    """A consult requested by the district doctor on one process, accepted by the specialist on the other."""
    caller = await open_lobby(requested_on, "doctor")
    specialist = await open_lobby(answered_on, "specialist", on_duty=True)
    try:
        answer = await caller.call("consult-request", CARDIOLOGY)
        assert answer["ok"], answer
        consult_id: str = answer["consult"]["id"]
        await specialist.wait(lambda: (specialist.my_ring(consult_id) or {}).get("status") == "ringing")
        accepted = await specialist.call("consult-accept", {"consult": consult_id})
        assert accepted["ok"], accepted
        return consult_id
    finally:
        await specialist.call("duty", {"onDuty": False})
        await caller.close()
        await specialist.close()



async def download(server: Server, path: str) -> int:
    token = await server.login("admin")
    async with aiohttp.ClientSession() as http, http.get(server.url + path,
                                                         headers={"Authorization": f"Bearer {token}"}) as response:
        await response.read()
        return response.status



async def timed(server: Server, path: str, user: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, body = await server.get(path, user=user)
    return status, body, time.monotonic() - started



async def listed_consults(server: Server, timeout: float = 15) -> list[str]:
    """The consult ids the log lists, once the process reaches Redis again."""
    deadline = time.monotonic() + timeout
    while (listed := await server.get("/api/consults", user="admin"))[0] != 200:
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.2)
    return [c["id"] for c in listed[1]["consults"]]

