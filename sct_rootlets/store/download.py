"""HTTP download of model archives: mirrors in order, retries, resume (HTTP Range) and a progress bar.

A partial download is kept as `<dest>.part`; the next attempt, in this process or a later one, asks the server
for the missing bytes only.
"""

import hashlib
import logging
import re
import shutil
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from sct_rootlets.errors import InstallError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
#: A download nobody asked for (the default model on first use) gets one 3 s connection try per mirror, so a
#: machine without network falls back to the bundled model within seconds.
IMPATIENT_CONNECT_TIMEOUT_S = 3
#: Interrupted transfers resumed per mirror before moving on to the next one.
MAX_RESUMES = 5
#: Small enough that little is lost when a transfer breaks (a partial chunk is discarded), big enough to be fast.
DOWNLOAD_CHUNK_BYTES = 64 << 10
HASH_CHUNK_BYTES = 1 << 20
#: Free space kept beyond the archive itself, so a download never fills the disk.
DISK_MARGIN_BYTES = 64 << 20

_TRANSFER_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class _NoAnswer(Exception):
    """The server never answered a request: no connection, or no response headers in time."""


def http_session(connect_retries: int = 3) -> requests.Session:
    """A session that retries failed connections and 5xx answers with backoff (body errors are resumed)."""
    retry = Retry(total=3, connect=connect_retries, read=0, status=3, backoff_factor=0.5,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET",), raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(HASH_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_free_space(folder: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed_bytes + DISK_MARGIN_BYTES > free:
        raise InstallError(f"Not enough disk space in {folder}: {needed_bytes / 1e6:.0f} MB needed, "
                           f"{free / 1e6:.0f} MB free.")


def _content_range(response: requests.Response):
    """(first byte, total size or None) of a 206 answer, or None if the header is malformed."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if not match:
        return None
    return int(match.group(1)), (None if match.group(2) == "*" else int(match.group(2)))


def _no_answer_reason(exc: Exception) -> str:
    """The OS's words when there are some ('[Errno 111] Connection refused'), else the kind of failure."""
    match = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return match.group(0) if match else type(exc).__name__


def _fetch_once(session: requests.Session, url: str, part: Path, progress: bool, connect_timeout_s: float) -> bool:
    """One GET (resuming from the partial file); True when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = session.get(url, stream=True, headers=headers, timeout=(connect_timeout_s, READ_TIMEOUT_S))
    except _TRANSFER_ERRORS as exc:
        raise _NoAnswer(_no_answer_reason(exc)) from exc
    with response:
        if response.status_code == 416 and offset:
            logger.info("Partial download of %s no longer matches the server; starting again.", url)
            part.unlink()
            return False
        response.raise_for_status()
        if response.status_code == 206:
            content_range = _content_range(response)
            if content_range is None or content_range[0] != offset:
                logger.info("Server of %s resumed at the wrong byte; starting again.", url)
                part.unlink()
                return False
            total = content_range[1]
        else:
            if offset:
                logger.info("Server of %s ignores resume requests; starting again.", url)
            offset = 0
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        if total is not None:
            _check_free_space(part.parent, total - offset)
        with open(part, "ab" if offset else "wb") as stream, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=Path(url).name, disable=not progress, leave=False) as bar:
            for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
                stream.write(chunk)
                bar.update(len(chunk))
    return total is None or part.stat().st_size == total


def download_file(urls, dest: Path, *, progress: bool = True, session: requests.Session = None,
                  patient: bool = True) -> str:
    """Download the first URL that works into `dest`; return that URL.

    Each mirror is tried in order; a dropped transfer is resumed from where it stopped up to MAX_RESUMES
    times before the next mirror is tried. An HTTP error (404, 5xx after retries) or a mirror that does not answer
    its first request (the session has already retried connecting) moves on at once. `patient=False` is for
    downloads nobody asked for: one connection try with a short timeout (IMPATIENT_CONNECT_TIMEOUT_S).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    session = session or http_session(connect_retries=3 if patient else 0)
    connect_timeout_s = CONNECT_TIMEOUT_S if patient else IMPATIENT_CONNECT_TIMEOUT_S
    failures = []
    for url in urls:
        for attempt in range(1 + MAX_RESUMES):
            try:
                if _fetch_once(session, url, part, progress, connect_timeout_s):
                    part.replace(dest)
                    return url
                logger.info("Transfer of %s ended early; resuming (attempt %d).", url, attempt + 1)
            except requests.HTTPError as exc:
                failures.append(f"{url} answered HTTP {exc.response.status_code}")
                break
            except _NoAnswer as exc:
                if attempt == 0:
                    failures.append(f"{url} could not be reached ({exc})")
                    break
                logger.info("Transfer of %s interrupted (%s); resuming.", url, exc)
            except _TRANSFER_ERRORS as exc:
                logger.info("Transfer of %s interrupted (%s); resuming.", url, type(exc).__name__)
        else:
            failures.append(f"{url} kept failing after {MAX_RESUMES} resumed transfers")
        # A partial file from one mirror must not be completed with bytes from another.
        part.unlink(missing_ok=True)
    raise InstallError(f"Could not download {dest.name}: {'; '.join(failures)}.")
