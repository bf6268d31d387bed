"""The one error type media reports to signaling: a code the client can act on and a readable message."""


class MediaError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class IncompatibleAiortc(RuntimeError):
    """The installed aiortc/aioice is not the one the hooks (``hooks.py``, ``nack.py``) were written against."""
