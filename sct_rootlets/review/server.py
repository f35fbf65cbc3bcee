"""The review web app: a standard-library HTTP server on 127.0.0.1 around the page in `static/`.

Security (the server runs on shared machines, often reached through SSH port forwarding):
- it listens on 127.0.0.1 only, and answers only requests whose Host is 127.0.0.1, localhost or [::1] (a web page
  elsewhere cannot rebind a name of its own to it);
- every request carries the session's token (`secrets.token_urlsafe`): the page is opened with `?token=`, which
  also sets a same-site, HttpOnly cookie for the files the viewer loads. Cookies ignore ports, so the cookie is
  named for this session only (a second session on another port sets its own and both tabs keep working) and holds
  not the token but a read-only key of this session (what another service on 127.0.0.1 receives cannot write);
  writes (POST) need the token in the `X-Review-Token` header, which another site's page cannot set. No token: 401;
  a wrong one: 403. The token never appears in the logs;
- files are served only from the dataset, the predictions and the output folder (`/files/data|pred|out/<path>`,
  NIfTI and JSON only): every requested path is percent-decoded once, resolved with symlinks followed, and refused
  unless it lies inside the resolved folder;
- corrections are written only to their place in the output folder (derived from the image, never from the
  request), after the checks of `saving`, and never through a symlink leading out of it;
- it holds under abuse (`connections`): idle and slow connections time out, a fixed number of threads answer, every
  malformed request gets a 4xx answer and no traceback.
"""

import errno
import hashlib
import json
import logging
import mimetypes
import re
import secrets
import threading
import urllib.parse
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from sct_rootlets import __version__
from sct_rootlets.anatomy.level_names import spinal_level_name
from sct_rootlets.errors import RootletsError
from sct_rootlets.io.bids import DEFAULT_SUFFIX
from sct_rootlets.qc.pictures import level_colour  # SCT's rootlets colours, cycled from C2
from sct_rootlets.review.connections import BoundedHTTPServer, BoundedRequestHandler
from sct_rootlets.review.items import ReviewFolders, ReviewItem, find_items
from sct_rootlets.review.lists import Marks, read_qc_fail_yml
from sct_rootlets.review.ranking import DEFAULT_ORDER, ordered, quality_summary
from sct_rootlets.review.saving import LABEL_VALUES, CorrectionWriter, UploadRefused, clean_rater, file_version

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
COOKIE_PREFIX = "sct_rootlets_review_"
TOKEN_HEADER = "X-Review-Token"
SERVED_SUFFIXES = (".nii", ".nii.gz", ".json")
MAX_FORM_BYTES = 64 * 1024
#: A request target longer than this is refused (414) before it reaches the file system.
MAX_PATH_CHARACTERS = 4096
_DIGITS = re.compile(r"[0-9]{1,15}")
_ITEM_PATH = re.compile(r"/api/items/([0-9]{1,9})/([a-z]+)")
_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s]*")
#: A too large upload up to this size is read and dropped before the refusal is sent; a larger one is cut off.
DRAIN_BYTES = 1 << 30
ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data: blob:; connect-src 'self' blob: data:; worker-src 'self' blob:; "
                           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def static_folder() -> Path:
    return Path(str(resources.files("sct_rootlets.review") / "static"))


def inside(folder: Path, relative: str) -> Optional[Path]:
    """`folder/relative` with symlinks resolved, if it lies inside the (resolved) folder; else None."""
    if "\x00" in relative or "\\" in relative:
        return None
    root = folder.resolve()
    try:
        candidate = (root / relative.lstrip("/")).resolve()
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        return None
    return candidate if candidate == root or candidate.is_relative_to(root) else None


def _is_file(path: Path) -> bool:
    """Path.is_file, with a name the file system refuses (too long, say) taken as no file."""
    try:
        return path.is_file()
    except OSError:
        return False


def _host_name(host: str) -> str:
    """'localhost' for 'localhost:8080', '[::1]' for '[::1]:8080'."""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0]


class ReviewSession:
    """The state one server serves: folders, the images to review (in the order listed, `order` naming it), marks,
    the correction writer, the token."""

    def __init__(self, folders: ReviewFolders, items: list, *, rater: str = "", token: Optional[str] = None,
                 allowed=LABEL_VALUES, order: str = "file"):
        self.folders = folders
        self.items = list(items)
        self.order = order
        self.rater = rater or ""
        self.token = token or secrets.token_urlsafe(32)
        #: What the cookie holds: a key that lets this session's files and lists be read, never written.
        self.read_key = secrets.token_urlsafe(32)
        self.cookie_name = COOKIE_PREFIX + secrets.token_hex(6)
        self.allowed = tuple(allowed)
        self.marks = Marks(folders)
        self.writer = CorrectionWriter(folders, self.allowed)
        self.saved = 0

    def file_url(self, path: Optional[Path]) -> Optional[str]:
        if path is None:
            return None
        resolved = Path(path).resolve()
        for name, root in self.folders.roots().items():
            if resolved.is_relative_to(root):
                return f"/files/{name}/" + urllib.parse.quote(resolved.relative_to(root).as_posix())
        return None

    def describe(self, index: int) -> dict:
        item = self.items[index]
        return {"index": index, "key": item.key, "name": item.name, "mark": self.marks.get(item.name),
                "corrected": item.correction.is_file(), "prediction": item.prediction is not None,
                "image_url": self.file_url(item.image.path), "cord_url": self.file_url(item.cord),
                "labels_url": f"/api/items/{index}/labels", "quality": quality_summary(item.quality)}

    def summary(self) -> dict:
        return {"version": __version__, "rater": self.rater, "out": str(self.folders.out),
                "qc_fail": str(self.marks.qc_fail_path), "order": self.order,
                "levels": [{"value": value, "name": spinal_level_name(value),
                            "colour": "#%02X%02X%02X" % level_colour(value)}
                           for value in self.allowed if value >= 2],
                "items": [self.describe(index) for index in range(len(self.items))]}

    def labels(self, item: ReviewItem) -> tuple:
        """(bytes, version, source) of what the page opens; version is the correction's SHA-256 or "none"."""
        try:
            data = item.correction.read_bytes()
            return data, hashlib.sha256(data).hexdigest(), "correction"
        except FileNotFoundError:
            if item.prediction is None:
                raise
            return item.prediction.read_bytes(), file_version(item.correction), "prediction"


    def redact(self, text: str) -> str:
        """`text` without the token nor the read key: what may go to a log."""
        text = _TOKEN_IN_QUERY.sub(r"\1<hidden>", text)
        return text.replace(self.token, "<token>").replace(self.read_key, "<key>")


class ReviewServer(BoundedHTTPServer):
    def __init__(self, session: ReviewSession, port: int = DEFAULT_PORT, **limits):
        """`limits`: BoundedHTTPServer's timeouts and sizes, to change its defaults."""
        self.session = session
        try:
            super().__init__((HOST, port), _Handler, **limits)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RootletsError(f"Port {port} is in use; choose another with -port N, or -port 0 for a free "
                                    f"one.") from None
            raise

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.session.token}"

    def start(self) -> "ReviewServer":
        """Serve in a background thread (tests, notebooks); `stop()` ends it."""
        self._thread = threading.Thread(target=self.serve_forever, name="sct_rootlets_review", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Handler(BoundedRequestHandler):
    server_version = f"sct_rootlets_review/{__version__}"
    server: ReviewServer

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        logger.debug("%s %s", self.address_string(), self.server.session.redact(format % args))

    # --- responses ---------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, content, headers: Optional[dict] = None) -> None:
        self._send(status, json.dumps(content).encode("utf-8"), "application/json", headers)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # --- the token -----------------------------------------------------------------------------------------

    def _token_given(self, query: dict, for_write: bool) -> Optional[str]:
        """The token sent (header; for reads also `?token=`), or for reads this session's cookie's read key."""
        header = self.headers.get(TOKEN_HEADER)
        if header is not None or for_write:
            return header
        if "token" in query:
            return query["token"][0]
        session = self.server.session
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == session.cookie_name:
                return session.token if _same(value, session.read_key) else value
        return None

    def _authorised(self, query: dict, for_write: bool = False) -> bool:
        if _host_name(self.headers.get("Host") or "") not in ALLOWED_HOSTS:
            self._error(HTTPStatus.FORBIDDEN, "This server answers only requests to 127.0.0.1 or localhost.")
            return False
        given = self._token_given(query, for_write)
        if not given:
            self._error(HTTPStatus.UNAUTHORIZED, "Open the address that sct_rootlets_review printed: it carries the "
                                                 "access token." if not for_write else
                        f"Writes need the session's token in the {TOKEN_HEADER} header.")
            return False
        if not _same(given, self.server.session.token):
            self._error(HTTPStatus.FORBIDDEN, "Wrong access token: open the address that sct_rootlets_review "
                                              "printed for this session.")
            return False
        return True

    # --- routes --------------------------------------------------------------------------------------------

    def _route(self) -> tuple:
        parts = urllib.parse.urlsplit(self.path)
        return parts.path, urllib.parse.parse_qs(parts.query)

    def _answer(self, respond: Callable[[], None]) -> None:
        """Run `respond`, turning what a request can cause into an HTTP answer: a refused or impossible request is a
        4xx with one sentence, a file-system failure a 500; a broken connection goes up to close it quietly."""
        try:
            if len(self.path) > MAX_PATH_CHARACTERS:
                return self._error(HTTPStatus.REQUEST_URI_TOO_LONG, f"The address is too long (more than "
                                                                    f"{MAX_PATH_CHARACTERS} characters).")
            respond()
        except UploadRefused as exc:
            self._error(exc.status, str(exc))
        except RootletsError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            logger.error("Cannot answer %s: %s", self.server.session.redact(self.path), exc)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"The server could not read or write a file: "
                                                          f"{exc.strerror or exc}.")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _get(self) -> None:
        path, query = self._route()
        if not self._authorised(query):
            return
        session = self.server.session
        if path in ("/", "/index.html"):
            return self._page()
        if path.startswith("/static/"):
            return self._file(static_folder(), path[len("/static/"):], static=True)
        if path.startswith("/files/"):
            root_name, _, rest = path[len("/files/"):].partition("/")
            root = session.folders.roots().get(root_name)
            if root is None:
                return self._error(HTTPStatus.NOT_FOUND, f"No folder {root_name!r}: use data, pred or out.")
            return self._file(root, rest)
        if path == "/api/session":
            return self._json(HTTPStatus.OK, session.summary())
        if path == "/api/qc_fail.yml":
            return self._send(HTTPStatus.OK, session.marks.qc_fail_text().encode("utf-8"),
                              "text/yaml; charset=utf-8",
                              {"Content-Disposition": 'attachment; filename="qc_fail.yml"'})
        index, action = self._item(path)
        if index is not None and action == "labels":
            data, version, source = session.labels(session.items[index])
            return self._send(HTTPStatus.OK, data, "application/octet-stream",
                              {"X-Review-Version": version, "X-Review-Source": source})
        return self._error(HTTPStatus.NOT_FOUND, "Not found.")

    def _post(self) -> None:
        path, query = self._route()
        if not self._authorised(query, for_write=True):
            return
        index, action = self._item(path)
        if index is None or action not in ("mark", "save"):
            return self._error(HTTPStatus.NOT_FOUND, "Not found.")
        session = self.server.session
        item = session.items[index]
        body = self._body(session.writer.limit(item) if action == "save" else MAX_FORM_BYTES)
        if body is None:
            return
        if action == "mark":
            mark, rater = _mark_form(body)
            session.marks.set(item.name, mark, clean_rater(rater or session.rater, required=False))
            return self._json(HTTPStatus.OK, session.describe(index))
        result = session.writer.save(item, body, base_version=query.get("base", [""])[0],
                                     rater=query.get("rater", [session.rater])[0])
        session.saved += 1
        logger.info("Saved %s (%d voxels changed)", result.path, result.voxels_changed)
        return self._json(HTTPStatus.OK, {**session.describe(index), "version": result.version,
                                          "path": str(result.path), "voxels_changed": result.voxels_changed,
                                          "previous": str(result.previous) if result.previous else None})

    def _body(self, limit: int) -> Optional[bytes]:
        length = self.headers.get("Content-Length")
        if length is None or not _DIGITS.fullmatch(length.strip()):
            self.close_connection = True
            if length is None:
                self._error(HTTPStatus.LENGTH_REQUIRED, "The request needs a Content-Length.")
            else:
                self._error(HTTPStatus.BAD_REQUEST, "The request's Content-Length is not a number of bytes.")
            return None
        length = int(length.strip())
        if length > limit:
            self.close_connection = True
            if length <= DRAIN_BYTES:  # read and dropped (never kept), so that the client gets the answer
                self._drain(length)
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"The upload is too large ({length} bytes; at most {limit} for this image).")
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, f"The request ended after {len(body)} of {length} bytes.")
            return None
        return body

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _item(self, path: str) -> tuple:
        """(index, action) of `/api/items/<index>/<action>` for an existing item; else (None, None)."""
        match = _ITEM_PATH.fullmatch(path)
        if match and int(match[1]) < len(self.server.session.items):
            return int(match[1]), match[2]
        return None, None

    def _page(self) -> None:
        session = self.server.session
        html = (static_folder() / "index.html").read_text(encoding="utf-8")
        html = html.replace("{{TOKEN}}", session.token)
        cookie = f"{session.cookie_name}={session.read_key}; Path=/; HttpOnly; SameSite=Strict"
        self._send(HTTPStatus.OK, html.encode("utf-8"), "text/html; charset=utf-8", {"Set-Cookie": cookie})

    def _file(self, root: Path, raw_relative: str, static: bool = False) -> None:
        try:
            relative = urllib.parse.unquote(raw_relative, errors="strict") if raw_relative else ""
        except UnicodeDecodeError:
            return self._error(HTTPStatus.BAD_REQUEST, "The file path is not UTF-8 once percent-decoded.")
        target = inside(root, relative)
        if target is None:
            return self._error(HTTPStatus.FORBIDDEN, "Refused: that path lies outside the folders of this review.")
        if not _is_file(target):
            return self._error(HTTPStatus.NOT_FOUND, "No such file.")
        if not static and not target.name.endswith(SERVED_SUFFIXES):
            return self._error(HTTPStatus.FORBIDDEN, "Only NIfTI images and JSON sidecars are served.")
        content_type = ("text/javascript" if target.suffix == ".js" else mimetypes.guess_type(target.name)[0]
                        or "application/octet-stream")
        if target.name.endswith(".nii.gz") or target.suffix == ".nii":
            content_type = "application/octet-stream"
        self._send(HTTPStatus.OK, target.read_bytes(), content_type)


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a secret sent with the expected one."""
    return secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def _mark_form(body: bytes) -> tuple:
    """(mark, rater) of a mark's JSON body `{"mark": ..., "rater": ...}`, or RootletsError in one sentence."""
    try:
        form = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        form = None
    if not isinstance(form, dict) or not isinstance(form.get("mark", ""), str) \
            or not isinstance(form.get("rater") or "", str):
        raise RootletsError('Send {"mark": "pass" | "fail" | "artifact" | "", "rater": "<name>"}.')
    return form.get("mark", ""), form.get("rater") or ""


def open_session(*, path_data, path_pred, path_out=None, include: Optional[str] = None,
                 qc_fail: Optional[str] = None, rater: str = "", token: Optional[str] = None,
                 suffix=DEFAULT_SUFFIX, order: str = DEFAULT_ORDER) -> tuple:
    """(ReviewSession, left_out): the images to review (`suffix`: which contrast; `order`: "worst", the lowest
    quality score first, or "file", the dataset's order) and those left out, with reasons."""
    if include and qc_fail:
        raise RootletsError("Give -include or -qc-fail, not both.")
    folders = ReviewFolders.of(path_data, path_pred, path_out)
    listed = read_qc_fail_yml(qc_fail) if qc_fail else None
    items, left_out = find_items(folders, include=include, listed=listed, suffix=suffix)
    if not items and listed is not None:
        raise RootletsError(f"No image to review: none of the {len(listed)} image(s) listed in {qc_fail} is an "
                            f"image of {folders.data} with a prediction in {folders.pred_labels} or a correction in "
                            f"{folders.out}.")
    if not items:
        where = folders.pred_labels
        raise RootletsError(f"No image to review: no prediction found in {where} for the selected images of "
                            f"{folders.data} (expected <sub>/[<ses>/]anat/<stem>_label-rootlets_dseg.nii.gz).")
    return ReviewSession(folders, ordered(items, order), rater=rater, token=token, order=order), left_out


def serve_review(*, path_data, path_pred, path_out=None, include: Optional[str] = None,
                 qc_fail: Optional[str] = None, rater: str = "", port: int = DEFAULT_PORT,
                 on_ready: Callable[[str], None] = print, suffix=DEFAULT_SUFFIX,
                 order: str = DEFAULT_ORDER) -> ReviewSession:
    """Serve the review of a dataset until interrupted (Ctrl+C); `on_ready(url)` gets the address with its token.
    Returns the session (marks, number of saves) once stopped."""
    session, left_out = open_session(path_data=path_data, path_pred=path_pred, path_out=path_out, include=include,
                                      qc_fail=qc_fail, rater=rater, suffix=suffix, order=order)
    for path, reason in left_out:
        logger.info("Left out %s: %s", path, reason)
    server = ReviewServer(session, port)
    logger.info("Reviewing %d image(s); corrections go to %s, the fails to %s. Over SSH: "
                "ssh -L %d:127.0.0.1:%d <host>, then open the address below. Ctrl+C stops.",
                len(session.items), session.folders.out, session.marks.qc_fail_path, server.port, server.port)
    on_ready(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    session.marks.write_qc_fail()
    logger.info("Stopped: %d correction(s) saved; fails listed in %s", session.saved, session.marks.qc_fail_path)
    return session
