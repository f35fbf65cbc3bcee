"""The review server under held-open connections (issue 28): how long a valid request waits while N connections,
half of them half-sent, are held open. Runs `sct_rootlets_review` as a user does, on a generated one-image dataset,
so a tree from before the change can be measured the same way (PYTHONPATH=BASE):

    .venv/bin/python bench/bench_review_server.py [--held 1000] [--tries 5]
    PYTHONPATH=/tmp/base .venv/bin/python bench/bench_review_server.py

Prints one JSON line: the wall time of each valid request (GET of the page at the printed address) and the median.
"""

import argparse
import json
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def _dataset(root: Path) -> tuple:
    """(DS, PRED): one 1 mm T2w-named image and a prediction with a few labelled voxels."""
    data, pred = root / "ds" / "sub-01" / "anat", root / "pred" / "labels" / "sub-01" / "anat"
    data.mkdir(parents=True)
    pred.mkdir(parents=True)
    image = np.random.default_rng(0).normal(100, 10, (32, 40, 24)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[10:12, 20:22, 5:15] = 4
    nib.save(nib.Nifti1Image(image, np.eye(4)), data / "sub-01_T2w.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), pred / "sub-01_T2w_label-rootlets_dseg.nii.gz")
    return root / "ds", root / "pred"


def _get(port: int, path: str) -> float:
    """Seconds until the whole answer to one GET has arrived."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        while sock.recv(65536):
            pass
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held", type=int, default=1000)
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # both ends of every held connection (inherited)
    command = Path(sys.executable).with_name("sct_rootlets_review")
    with tempfile.TemporaryDirectory() as folder:
        data, pred = _dataset(Path(folder))
        server = subprocess.Popen([str(command), "-path-data", str(data), "-path-pred", str(pred), "-port", "0",
                                   "-rater", "bench"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            match = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", server.stdout.readline())
            port, path = int(match[1]), match[2]
            _get(port, path)  # warm
            waits = []
            for _ in range(args.tries):
                held = []
                for number in range(args.held):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                    if number % 2:
                        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    held.append(sock)
                time.sleep(0.5)
                waits.append(_get(port, path))
                for sock in held:
                    sock.close()
                time.sleep(1.0)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(json.dumps({"held": args.held, "waits_s": [round(w, 3) for w in waits],
                      "median_s": round(statistics.median(waits), 3)}))


if __name__ == "__main__":
    main()
