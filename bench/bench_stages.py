"""Where a whole `sct_deepseg_rootlets` process spends its time (issue 20): the command run in this process with
each stage timed (thread, start, end from process start), printed after the run on stderr.

    .venv/bin/python bench/bench_stages.py -i IMG -model MODEL -o OUT -overwrite [-s CORD]

The stages are wrapped by name (monkeypatching), so the same script times an older checkout of the package put
first on PYTHONPATH (`git archive BASE | tar -x -C /tmp/base; PYTHONPATH=/tmp/base python bench/bench_stages.py`).
"""

import functools
import sys
import threading
import time

START = time.perf_counter()
MARKS = []


def _timed(owner, name: str, label: str) -> None:
    original = getattr(owner, name, None)
    if original is None:  # a stage the tree timed does not have
        return

    @functools.wraps(original)
    def timed(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            MARKS.append((label, threading.current_thread().name, begin - START, time.perf_counter() - START))
    setattr(owner, name, timed)


def main() -> None:
    import sct_rootlets.segment as segment
    from sct_rootlets.anatomy import cord, postprocess, spinal_levels
    from sct_rootlets.inference import session
    from sct_rootlets.cli.deepseg_rootlets import main as command

    MARKS.append(("start-up and light imports", "MainThread", 0.0, time.perf_counter() - START))
    for owner, name, label in (
            (session, "select_device", "device choice (imports torch)"),
            (session, "choose_device", "device choice"),
            (cord.CordSegmenter, "__init__", "cord model loading"), (cord.CordSegmenter, "segment", "cord step"),
            (session.InferenceSession, "__init__", "model loading (a session)"),
            (session.InferenceSession, "prepare", "preprocessing while the cord is computed"),
            (session.InferenceSession, "predict", "prediction (a session)"),
            (session.InferenceSession, "predict_scored", "prediction with confidence (a session)"),
            (session, "network_confidence", "network confidence (issue 29)"),
            (segment, "assess", "quality flags and score (issue 29)"),
            (postprocess, "keep_near_cord", "canal filter"), (postprocess, "order_levels_rostro_caudally",
                                                              "level ordering"),
            (postprocess.PostProcessing, "apply", "post-processing, all"),
            (segment, "write_label_map", "writing the label map"),
            (spinal_levels, "write_spinal_levels", "spinal levels (read, compute, write)")):
        _timed(owner, name, label)
    try:
        command(sys.argv[1:])
    except SystemExit as exc:
        if exc.code:
            raise
    MARKS.append(("whole run in process", "MainThread", 0.0, time.perf_counter() - START))
    print(f"torch imported: {'torch' in sys.modules}", file=sys.stderr)
    for label, thread, begin, end in sorted(MARKS, key=lambda mark: mark[2]):
        print(f"{label:40s} {thread[:12]:12s} {begin:6.2f} -> {end:6.2f}  {end - begin:5.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
