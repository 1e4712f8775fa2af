"""The one codec: typed messages to JSON bytes and back (docs/protocol.md §4).

Decoding validates at the edge: the result is a typed message or a ``RemoteProtocolError``
whose ``error_code`` says what was wrong and whose ``path`` names the field. Nothing past this
module sees a raw dict.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec

from .errors import CloseCode, ErrorCode, RemoteProtocolError
from .messages import ClientMessage, ServerMessage

DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024
# §12: the advertised limit binds what clients send; server frames (history pages, contexts)
# may be larger, up to this bound that clients enforce.
MAX_SERVER_FRAME_BYTES: Final = 16 * 1024 * 1024

_encoder = msgspec.json.Encoder()
_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
T = TypeVar("T")
_PATH = re.compile(r" - at `(?P<path>[^`]+)`$")
_FIELD = re.compile(r"(?:missing required|unknown) field `(?P<field>[^`]+)`")


if TYPE_CHECKING:

    def encode(message: ClientMessage | ServerMessage) -> bytes:
        """Encode a message as the UTF-8 JSON payload of one text frame."""

else:
    # The encoder's bound method itself: no Python frame per message (five a request).
    encode = _encoder.encode


def decode_client(frame: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> ClientMessage:
    """Decode a frame the client sent, or raise ``RemoteProtocolError``."""
    # A frame of at most a quarter of the limit is within it whatever its characters: decoded
    # at once (one call a frame, not two); anything else, or a frame that fails, goes through
    # _decode, which sizes it and types the error.
    if len(frame) * 4 <= max_bytes:
        try:  # not contextlib.suppress: no context manager built per frame
            return _client_decoder.decode(frame)
        except msgspec.MsgspecError:
            pass
    return _decode(_client_decoder, frame, max_bytes)


def decode_server(frame: bytes | str, *, max_bytes: int = MAX_SERVER_FRAME_BYTES) -> ServerMessage:
    """Decode a frame the server sent, or raise ``RemoteProtocolError``."""
    if len(frame) * 4 <= max_bytes:  # as decode_client
        try:  # not contextlib.suppress: no context manager built per frame
            return _server_decoder.decode(frame)
        except msgspec.MsgspecError:
            pass
    return _decode(_server_decoder, frame, max_bytes)


def _decode(decoder: msgspec.json.Decoder[T], frame: bytes | str, max_bytes: int) -> T:
    size = len(frame)
    if isinstance(frame, str) and size * 4 > max_bytes:  # a character is up to 4 UTF-8 bytes
        size = len(frame.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise RemoteProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {size} bytes exceeds the limit of {max_bytes}",
            close_code=CloseCode.MESSAGE_TOO_BIG,
        )
    try:
        return decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(ErrorCode.MALFORMED_JSON, f"not a JSON object: {exc}") from None


def _validation_error(text: str) -> RemoteProtocolError:
    match = _PATH.search(text)
    path = match.group("path") if match else None
    field = _FIELD.search(text)
    if field:  # msgspec names the missing or unknown field apart from the object's path
        path = f"{path or '$'}.{field.group('field')}"
    if path == "$.type":
        code = ErrorCode.UNKNOWN_TYPE
    elif path is None and text.startswith("Expected `object`"):
        code = ErrorCode.MALFORMED_JSON
    else:
        code = ErrorCode.INVALID_MESSAGE
    return RemoteProtocolError(code, text, path=path)
