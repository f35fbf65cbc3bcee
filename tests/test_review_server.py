"""sct_rootlets_review's server under abuse (issue 28, item 2): held-open connections, malformed requests, two
sessions side by side, symlinks in OUT, odd file names, uploads that are not label maps, the logs, the rater, and
the permissions of files written from many threads at once; and the order it lists the images in (issue 29: worst
first, with scores and flags; `-order file`)."""

import gzip
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from contextlib import closing, contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import BIN
from review_data import Client, make_review_data, make_scored_review_data
from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.review.saving import nifti_bytes
from sct_rootlets.review.server import ReviewServer, open_session

HELD_CONNECTIONS = 1000


@pytest.fixture
def review(tmp_path):
    """A running server (port 0) over a generated dataset; yields (data dict, client, session, server)."""
    data = make_review_data(tmp_path)
    session, _ = open_session(path_data=data["data"], path_pred=data["pred"], rater="Jane Doe")
    with ReviewServer(session, 0) as server:
        yield data, Client(server.port, session.token), session, server


@contextmanager
def review_command(data: dict, *args):
    """`sct_rootlets_review` run as a user runs it; yields (port, token, output) where output["stderr"] is filled
    once the command has been stopped with Ctrl+C (SIGINT)."""
    process = subprocess.Popen([str(BIN / "sct_rootlets_review"), "-path-data", data["data"], "-path-pred",
                                data["pred"], "-port", "0", "-rater", "Jane Doe", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = {}
    try:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", process.stdout.readline().strip())
        assert match, process.stderr.read() if process.poll() is not None else "no address printed"
        yield int(match[1]), match[2], output
    finally:
        process.send_signal(signal.SIGINT)
        _, output["stderr"] = process.communicate(timeout=60)
        output["returncode"] = process.returncode


def status_of(port: int, request: bytes) -> int:
    """The status code of the answer to raw `request` bytes (0: the connection closed without an answer)."""
    with closing(socket.create_connection(("127.0.0.1", port), timeout=30)) as sock:
        sock.sendall(request)
        line = sock.makefile("rb").readline()
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", line)
    return int(match[1]) if match else 0


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (without answering) within 30 s."""
    sock.settimeout(30)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def closed_now(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


# --- held-open connections ----------------------------------------------------------------------------------------

@pytest.fixture
def descriptors():
    """Room for both ends of the held connections in this one process (the soft limit raised up to the hard one
    where needed, and set back after)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * HELD_CONNECTIONS + 512
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"this test needs {needed} open files; the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_held_connections_do_not_delay_a_valid_request(descriptors, review, capfd):
    data, client, session, server = review
    threads_before = threading.active_count()
    held = []
    try:
        for number in range(HELD_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            if number % 2:  # half-sent: a request line and part of the headers, never finished
                sock.sendall(b"GET /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            held.append(sock)
        time.sleep(0.5)  # let the server take them all in
        # every connection is held, none has been answered or closed
        sock = held[-1]
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        sock.setblocking(True)
        started = time.monotonic()
        status, _, body = client.get("/api/session")
        elapsed = time.monotonic() - started
        assert status == 200 and json.loads(body)["items"]
        assert elapsed < 1.0, f"a valid request waited {elapsed:.2f} s behind {HELD_CONNECTIONS} held connections"
        # a bounded number of threads answers: holding a thousand connections started no thread per connection
        assert threading.active_count() <= threads_before + 8
    finally:
        for sock in held:
            sock.close()
    assert client.get("/api/session")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_idle_and_slow_connections_are_closed_after_their_timeouts(tmp_path, capfd):
    data = make_review_data(tmp_path)
    session, _ = open_session(path_data=data["data"], path_pred=data["pred"], rater="Jane Doe")
    with ReviewServer(session, 0, head_timeout=0.5, body_timeout=0.5) as server:
        idle = socket.create_connection(("127.0.0.1", server.port))
        half_head = socket.create_connection(("127.0.0.1", server.port))
        half_head.sendall(b"GET / HTTP/1.1\r\n")
        slow_body = socket.create_connection(("127.0.0.1", server.port))
        slow_body.sendall(f"POST /api/items/0/mark HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Review-Token: {session.token}"
                          f"\r\nContent-Length: 100\r\n\r\n{{\"mark\":".encode())
        for sock in (idle, half_head, slow_body):
            with closing(sock):
                assert closed_by_server(sock)
        with closing(socket.create_connection(("127.0.0.1", server.port))) as trickle:
            trickle.sendall(f"POST /api/items/0/mark HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Review-Token: "
                            f"{session.token}\r\nContent-Length: 60000\r\n\r\n".encode())
            sent = 0
            while sent < 2000 and not closed_now(trickle):  # a byte every 10 ms: 100 bytes/s, never a whole body
                try:
                    sent += trickle.send(b" ")
                except OSError:
                    break
                time.sleep(0.01)
            assert sent < 2000, "a body trickled a byte at a time was never cut off"
        assert Client(server.port, session.token).get("/api/session")[0] == 200
    assert session.marks.marks == {}  # the slow mark was never taken
    assert "Traceback" not in capfd.readouterr().err


# --- malformed requests, broken pipes, the logs --------------------------------------------------------------------

def test_every_malformed_request_gets_a_4xx_and_nothing_leaks_into_the_logs(tmp_path):
    data = make_review_data(tmp_path)
    with review_command(data, "-v", "2") as (port, token, output):
        def post(path: str, body: bytes, length=None) -> bytes:
            size = f"Content-Length: {len(body) if length is None else length}\r\n" if length != "" else ""
            return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Review-Token: {token}\r\n{size}\r\n"
                    .encode("utf-8") + body)

        def get(path: str) -> bytes:
            return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Review-Token: {token}\r\n\r\n".encode()

        cases = {
            "%ff in a file path": (get("/files/data/sub-01/anat/%ff.nii.gz"), 400),
            "a 6,000-character path": (get("/files/data/" + "a" * 6000), 414),
            "a file name too long for the file system": (get("/files/data/" + "b" * 300 + ".nii.gz"), 404),
            "60,000 nested [ in a mark": (post("/api/items/0/mark", b"[" * 60000), 400),
            "a mark that is not an object": (post("/api/items/0/mark", b'"fail"'), 400),
            "a mark that is not UTF-8": (post("/api/items/0/mark", b'{"mark": "\xff"}'), 400),
            "a Content-Length of \u00b2": (post("/api/items/0/mark", b"{}", length="\u00b2"), 400),
            "a negative Content-Length": (post("/api/items/0/mark", b"{}", length="-1"), 400),
            "no Content-Length": (post("/api/items/0/mark", b"", length=""), 411),
            "a body shorter than its Content-Length, then silence": (post("/api/items/0/mark", b"{}", 10), 400),
            "an item number \u00b2": (get("/api/items/\u00b2/labels"), 404),
            "an item number too large": (get("/api/items/99999999999999999999/labels"), 404),
            "a method the server does not know": (b"DELETE /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405),
            "a TLS hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
            "a request line of 70,000 bytes": (b"GET /" + b"c" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
            "200 headers": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(200)) + b"\r\n", 431),
            "a header line of 70,000 bytes": (b"GET / HTTP/1.1\r\nX-Long: " + b"d" * 70000 + b"\r\n\r\n", 431),
        }
        for name, (request, expected) in cases.items():
            if name.startswith("a body shorter"):
                with closing(socket.create_connection(("127.0.0.1", port), timeout=60)) as sock:
                    sock.sendall(request)
                    sock.shutdown(socket.SHUT_WR)  # the client stops sending: the body ends short
                    line = sock.makefile("rb").readline()
                assert line.startswith(b"HTTP/1.0 400 "), (name, line)
                continue
            assert status_of(port, request) == expected, name
        # broken pipes: a large file asked for, the connection reset at once
        for _ in range(3):
            with closing(socket.create_connection(("127.0.0.1", port))) as sock:
                sock.sendall(get("/static/vendor/niivue/niivue.umd.js"))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client = Client(port, token)
        status, headers, _ = client.get(f"/?token={token}", token=None)
        read_key = headers["Set-Cookie"].split(";")[0].partition("=")[2]
        assert status == 200 and client.get("/api/session")[0] == 200
    stderr = output["stderr"]
    assert output["returncode"] == 0, stderr
    assert "Traceback" not in stderr
    assert "GET /api/session" in stderr  # -v 2 logs every request ...
    assert token not in stderr and read_key not in stderr  # ... without the token nor the cookie's key


# --- two sessions, the cookie -----------------------------------------------------------------------------------

def test_two_sessions_on_two_ports_both_keep_working(tmp_path):
    data = make_review_data(tmp_path)
    first, _ = open_session(path_data=data["data"], path_pred=data["pred"], path_out=tmp_path / "out1")
    second, _ = open_session(path_data=data["data"], path_pred=data["pred"], path_out=tmp_path / "out2")
    with ReviewServer(first, 0) as server_a, ReviewServer(second, 0) as server_b:
        tabs = [(Client(server_a.port), first), (Client(server_b.port), second)]
        jar = {}  # a browser's cookies for 127.0.0.1: cookies ignore ports, both servers get them all
        for client, session in tabs:
            status, headers, _ = client.get(f"/?token={session.token}", token=None)
            assert status == 200
            name, _, value = headers["Set-Cookie"].split(";")[0].partition("=")
            assert session.token not in headers["Set-Cookie"]  # the token itself goes to no other service
            jar[name] = value
        assert len(jar) == 2  # the second session's cookie did not replace the first one's
        cookie = "; ".join(f"{name}={value}" for name, value in jar.items())
        for client, session in tabs:
            assert client.get("/files/data/sub-01/anat/sub-01_T2w.nii.gz", headers={"Cookie": cookie},
                              token=None)[0] == 200
            assert client.get("/api/session", headers={"Cookie": cookie}, token=None)[0] == 200
            assert Client(client.port, session.token).mark(0, "fail")[0] == 200
        # what the cookie holds reads, never writes
        client, session = tabs[0]
        assert client.request("POST", "/api/items/0/mark", body=b'{"mark": "pass"}', token=None,
                              headers={"Cookie": cookie})[0] == 401
        assert Client(client.port, jar[next(iter(jar))]).mark(0, "pass")[0] == 403
        assert first.marks.get("sub-01/anat/sub-01_T2w.nii.gz") == "fail"


# --- writes stay inside OUT --------------------------------------------------------------------------------------

def _tree(folder: Path) -> list:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


def test_symlinks_in_out_do_not_carry_writes_outside_it(tmp_path):
    data = make_review_data(tmp_path)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "sub-01").mkdir(parents=True)
    (out / "sub-01" / "anat").symlink_to(elsewhere, target_is_directory=True)  # a folder leading out
    (out / "sub-02" / "anat").mkdir(parents=True)
    victim = elsewhere / "victim.nii.gz"
    (out / "sub-02" / "anat" / "sub-02_T2w_label-rootlets_dseg.nii.gz").symlink_to(victim)  # a file leading out
    (out / "review").symlink_to(elsewhere, target_is_directory=True)  # marks.json and qc_fail.yml
    session, _ = open_session(path_data=data["data"], path_pred=data["pred"], path_out=out, rater="Jane Doe")
    with ReviewServer(session, 0) as server:
        client = Client(server.port, session.token)
        for index, subject in ((0, "sub-01"), (1, "sub-02")):
            upload = nifti_bytes(nib.load(data["predictions"][subject]))
            base = client.labels(index)[1]
            status, _, body = client.save(index, upload, base)
            assert status == 403 and "outside the output folder" in json.loads(body)["error"], subject
        status, _, body = client.mark(2, "fail")
        assert status == 400 and "outside the output folder" in json.loads(body)["error"]
    assert _tree(elsewhere) == [] and not victim.exists()


# --- odd file names ----------------------------------------------------------------------------------------------

def _rename_subject(data: dict, old: str, new: str) -> None:
    """Rename subject `old` to `new` in the dataset and the predictions (folders and file names)."""
    for root in (data["data"], data["pred"] / "labels"):
        shutil.move(root / old, root / new)
        for path in (root / new).rglob(f"{old}_*"):
            path.rename(path.with_name(path.name.replace(old, new, 1)))


def test_any_file_name_round_trips_through_marks_and_qc_fail_yml(tmp_path):
    data = make_review_data(tmp_path)
    odd = "sub-01: odd #name 'q' [x]"
    _rename_subject(data, "sub-01", odd)
    session, _ = open_session(path_data=data["data"], path_pred=data["pred"], rater="Jane Doe")
    name = f"{odd}/anat/{odd}_T2w.nii.gz"
    assert session.items[0].name == name
    with ReviewServer(session, 0) as server:
        client = Client(server.port, session.token)
        assert client.mark(0, "fail")[0] == 200
        assert client.mark(1, "fail")[0] == 200
        status, _, served = client.get("/api/qc_fail.yml")
    written = session.marks.qc_fail_path
    assert status == 200 and served == written.read_bytes()
    assert yaml.safe_load(written.read_text(encoding="utf-8")) == {
        "FILES_ROOTLETS": [name, "sub-02/anat/sub-02_T2w.nii.gz"]}
    assert json.loads(session.marks.path.read_text(encoding="utf-8"))[name]["mark"] == "fail"
    again, _ = open_session(path_data=data["data"], path_pred=data["pred"], qc_fail=written)  # a later session
    assert [item.name for item in again.items] == [name, "sub-02/anat/sub-02_T2w.nii.gz"]
    assert again.marks.get(name) == "fail"


# --- uploads that are not label maps ---------------------------------------------------------------------------

def test_complex_uploads_and_damaged_gzip_are_refused(review):
    data, client, session, _ = review
    prediction = nib.load(data["predictions"]["sub-01"])
    voxels = np.asarray(prediction.dataobj)
    complex_labels = nib.Nifti1Image(voxels.astype(np.complex64) + 1j, prediction.affine)
    status, _, body = client.save(0, nifti_bytes(complex_labels), "none")
    assert status == 422 and "complex64" in json.loads(body)["error"]
    good = nifti_bytes(nib.Nifti1Image(voxels, prediction.affine))
    damaged = bytearray(good)
    damaged[-8] ^= 0xFF  # the CRC-32 of the gzip trailer (RFC 1952: CRC32 then ISIZE, 4 bytes each)
    assert gzip.decompress(good)  # the undamaged upload is whole
    for upload in (bytes(damaged), good[:-8], good + b"trailing bytes"):
        status, _, body = client.save(0, upload, "none")
        assert status == 400 and "gzip" in json.loads(body)["error"]
    assert not session.items[0].correction.exists()
    assert client.save(0, good, "none")[0] == 200


# --- the rater, cleaned alike everywhere -----------------------------------------------------------------------

def test_a_marks_rater_is_cleaned_as_a_saves_is(review):
    data, client, session, _ = review
    name = "sub-01/anat/sub-01_T2w.nii.gz"
    mark = json.dumps({"mark": "fail", "rater": "  Ada \t\n Lovelace\x07 "}).encode()
    assert client.request("POST", "/api/items/0/mark", body=mark)[0] == 200
    assert json.loads(session.marks.path.read_text())[name]["rater"] == "Ada Lovelace"
    too_long = "x" * 201
    status, _, body = client.request("POST", "/api/items/0/mark",
                                     body=json.dumps({"mark": "pass", "rater": too_long}).encode())
    mark_error = json.loads(body)["error"]
    assert status == 400 and "too long" in mark_error
    upload = nifti_bytes(nib.load(data["predictions"]["sub-01"]))
    status, _, body = client.save(0, upload, "none", rater=too_long)
    assert status == 400 and json.loads(body)["error"] == mark_error
    assert session.marks.get(name) == "fail"
    status, _, body = client.save(0, upload, "none", rater=" Ada\n\nLovelace ")
    assert status == 200
    assert json.loads(session.items[0].correction_sidecar.read_text())["GeneratedBy"][-1]["Author"] == "Ada Lovelace"


# --- permissions of files written from many threads ------------------------------------------------------------

def _process_umask() -> int:
    """The umask as the kernel reports it (Linux), read without changing it."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^Umask:\s+([0-7]+)$", status, re.MULTILINE)[1], 8)


def test_concurrent_atomic_writes_never_touch_the_umask_nor_make_world_writable_files(tmp_path, monkeypatch):
    if not Path("/proc/self/status").is_file() or "Umask:" not in Path("/proc/self/status").read_text():
        pytest.skip("the kernel does not report the umask in /proc/self/status")
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
    previous = real_umask(0o027)
    try:
        def write(thread: int) -> None:
            for number in range(25):
                with atomic_paths([tmp_path / f"t{thread}" / f"f{number}.json"], overwrite=True) as (tmp,):
                    tmp.write_text("{}")

        threads = [threading.Thread(target=write, args=(thread,)) for thread in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        umask_after = _process_umask()
    finally:
        real_umask(previous)
    files = [path for path in tmp_path.rglob("*.json")]
    assert len(files) == 8 * 25
    assert calls == [] and umask_after == 0o027
    assert {path.stat().st_mode & 0o777 for path in files} == {0o640}  # 0666 less the umask 027


# --- worst first (issue 29) --------------------------------------------------------------------------------------

SCORED_NAMES = {"sub-01": "sub-01/anat/sub-01_T2w.nii.gz", "sub-02": "sub-02/anat/sub-02_T2w.nii.gz",
                "sub-03": "sub-03/ses-01/anat/sub-03_ses-01_T2w.nii.gz", "sub-04": "sub-04/anat/sub-04_T2w.nii.gz"}


def test_the_api_lists_the_worst_first_with_scores_per_level_and_flags(tmp_path):
    """Scores by hand (review_data.QUALITY): sub-03 0.2, sub-01 0.7; sub-02 has no record and sub-04 an unreadable
    one (score 1.5), so both follow in dataset order. Item indexes address the listed order."""
    data = make_scored_review_data(tmp_path)
    session, _ = open_session(path_data=data["data"], path_pred=data["pred"], rater="Jane Doe")
    with ReviewServer(session, 0) as server:
        client = Client(server.port, session.token)
        listed = client.json("/api/session")
        assert client.mark(0, "fail")[0] == 200
    assert listed["order"] == "worst"
    assert [item["name"] for item in listed["items"]] == [SCORED_NAMES[s] for s in ("sub-03", "sub-01", "sub-02",
                                                                                    "sub-04")]
    assert [item["index"] for item in listed["items"]] == [0, 1, 2, 3]
    worst, second, unscored, unreadable = listed["items"]
    assert worst["quality"] == {
        "score": 0.2, "worst_level": "C4", "levels": {"C2": 0.8, "C4": 0.2},
        "flags": [{"name": "missing_level", "level": "C3", "message": "No C3 rootlets between C2 and C4."},
                  {"name": "small_level", "level": "C4", "message": "C4 has 3 voxels, far fewer than C2."}]}
    assert second["quality"] == {"score": 0.7, "worst_level": "C3", "levels": {"C2": 0.9, "C3": 0.7}, "flags": []}
    assert unscored["quality"] is None and unreadable["quality"] is None
    marks = json.loads(session.marks.path.read_text(encoding="utf-8"))
    assert {name: record["mark"] for name, record in marks.items()} == {SCORED_NAMES["sub-03"]: "fail"}


def test_order_file_keeps_the_dataset_order(tmp_path):
    data = make_scored_review_data(tmp_path)
    with review_command(data, "-order", "file") as (port, token, _):
        listed = Client(port, token).json("/api/session")
    assert listed["order"] == "file"
    assert [item["name"] for item in listed["items"]] == [SCORED_NAMES[s] for s in ("sub-01", "sub-02", "sub-03",
                                                                                    "sub-04")]
    assert [item["quality"] and item["quality"]["score"] for item in listed["items"]] == [0.7, None, 0.2, None]
