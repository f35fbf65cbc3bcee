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
#: Interrupted transfers resumed per mirror before moving on to the next one.
MAX_RESUMES = 5
#: Small enough that little is lost when a transfer breaks (a partial chunk is discarded), big enough to be fast.
DOWNLOAD_CHUNK_BYTES = 64 << 10
HASH_CHUNK_BYTES = 1 << 20
#: Free space kept beyond the archive itself, so a download never fills the disk.
DISK_MARGIN_BYTES = 64 << 20

_TRANSFER_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def http_session() -> requests.Session:
    """A session that retries failed connections and 5xx answers with backoff (body errors are resumed)."""
    retry = Retry(total=3, connect=3, read=0, status=3, backoff_factor=0.5,
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


def _fetch_once(session: requests.Session, url: str, part: Path, progress: bool) -> bool:
    """One GET (resuming from the partial file); True when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, stream=True, headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
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


def download_file(urls, dest: Path, *, progress: bool = True, session: requests.Session = None) -> str:
    """Download the first URL that works into `dest`; return that URL.

    Each mirror is tried in order; a dropped transfer is resumed from where it stopped up to MAX_RESUMES
    times before the next mirror is tried. An HTTP error (404, 5xx after retries) moves on at once.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    session = session or http_session()
    failures = []
    for url in urls:
        for attempt in range(1 + MAX_RESUMES):
            try:
                if _fetch_once(session, url, part, progress):
                    part.replace(dest)
                    return url
                logger.info("Transfer of %s ended early; resuming (attempt %d).", url, attempt + 1)
            except requests.HTTPError as exc:
                failures.append(f"{url} answered HTTP {exc.response.status_code}")
                break
            except _TRANSFER_ERRORS as exc:
                logger.info("Transfer of %s interrupted (%s); resuming.", url, type(exc).__name__)
        else:
            failures.append(f"{url} kept failing after {MAX_RESUMES} resumed transfers")
        # A partial file from one mirror must not be completed with bytes from another.
        part.unlink(missing_ok=True)
    raise InstallError(f"Could not download {dest.name}: {'; '.join(failures)}.")
