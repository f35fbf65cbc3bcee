"""Review and correct rootlet labels in the browser (`sct_rootlets_review`): the step of the active-learning loop
that costs the most human time.

- `items`: which images to review, their predictions (`PRED/labels/...`), cord masks and corrections (`OUT/...`);
- `ranking`: worst first, the lowest quality score (the prediction sidecar's record) listed first, or `-order file`;
- `lists`: lists in (our viewer's `qc_fail_subjects.txt`, SCT's viewer's `qc_fail.yml`) and out (`qc_fail.yml` with
  `FILES_ROOTLETS`, as NeuroPoly's manual_correction.py reads it), and the session's pass/fail/artifact marks;
- `saving`: uploads checked (NIfTI, the image's grid, label values, size) and written atomically on the image's exact
  grid, the previous version kept, stale tabs refused, the sidecar's `GeneratedBy` extended with the rater;
- `server`: the local web app (on 127.0.0.1, token on every request) around the vendored NiiVue viewer in `static/`;
- `connections`: the HTTP server under it that holds under abuse (a selector for waiting connections, a fixed pool
  of threads for whole requests, timeouts);
- `desktop`: `-viewer fsleyes|itksnap`, the same list opened in a desktop viewer.
"""
