"""A raw-socket multipart uploader that counts what it sent before the server answered."""

from __future__ import annotations

import select
import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

BOUNDARY = "upload-client-boundary-7d1f"
PIECE = 64 * 1024
# A small send buffer, so what counts as sent is what the server took, not what the kernel
# queued on the client's side while the answer was on its way.
SEND_BUFFER = 64 * 1024
WAIT_SECONDS = 60.0


@dataclass
class UploadResult:
    """The server's answer and how many body bytes the client had sent when it came."""

    status: int
    headers: dict[str, str]
    body: bytes
    body_bytes_sent: int


def wav_header(data_bytes: int, rate: int = 44100, channels: int = 2) -> bytes:
    """A 16-bit PCM WAV header announcing `data_bytes` of samples."""
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def upload_silence(base_url: str, token: str, data_bytes: int, *, chunked: bool = False) -> UploadResult:
    """POST a WAV of `data_bytes` of silence to /api/v1/audio/, generated while it is sent.

    The client stops sending as soon as the server has answered (or closed), so the count
    shows how much of the body the server took before refusing it.
    """
    url = urlsplit(base_url)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="silence.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode() + wav_header(data_bytes)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    total = len(head) + data_bytes + len(tail)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    request = (
        f"POST /api/v1/audio/ HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"{framing}\r\nConnection: close\r\n\r\n"
    ).encode()
    zeros = bytes(PIECE)

    def pieces():
        yield head
        left = data_bytes
        while left:
            size = min(PIECE, left)
            yield zeros[:size]
            left -= size
        yield tail

    sent = 0
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.connect((url.hostname, url.port))
        sock.sendall(request)
        for piece in pieces():
            frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            if not _send_unless_answered(sock, frame):
                break
            sent += len(piece)
        else:
            if chunked:
                _send_unless_answered(sock, b"0\r\n\r\n")
        raw = _read_all(sock)
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return UploadResult(status, headers, body, sent)


def _send_unless_answered(sock: socket.socket, data: bytes) -> bool:
    """Send `data`; False (and nothing more sent) once the server has answered or closed."""
    view = memoryview(data)
    while view:
        readable, writable, _ = select.select([sock], [sock], [], WAIT_SECONDS)
        if readable:
            return False
        if not writable:
            raise AssertionError(f"server neither read nor answered for {WAIT_SECONDS} s")
        try:
            view = view[sock.send(view) :]
        except (BrokenPipeError, ConnectionResetError):
            return False
    return True


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(WAIT_SECONDS)
    parts = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        parts.append(data)
    return b"".join(parts)
