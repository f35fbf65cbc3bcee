// Rootlets QC viewer: reads the entries SCT's format keeps in js/datasets.js; marks persist in localStorage.
(function () {
  "use strict";
  const entries = (window.SCT_QC_DATASETS || []).slice();
  const extras = window.SCT_ROOTLETS_EXTRAS || {};
  const storageKey = (window.SCT_QC_UUID || "no-uuid") + "-sct-rootlets-qc-marks";
  const marks = JSON.parse(localStorage.getItem(storageKey) || "{}");
  const body = document.querySelector("#entries tbody");
  const subjectFilter = document.getElementById("subject-filter");
  const levelFilter = document.getElementById("level-filter");
  const textFilter = document.getElementById("text-filter");
  const overlay = document.getElementById("overlay");
  const scoreHeader = document.getElementById("score-header");
  let visible = [];
  let selected = -1;
  let scoreOrder = 0;  // 0: as written; 1: lowest score first; -1: highest first (entries without one: last)

  function entryId(entry) { return entry.backgroundImage; }
  function entryTimestamp(entry) { const parts = entry.backgroundImage.split("/"); return parts[parts.length - 2]; }
  function entryExtras(entry) { return extras[entryTimestamp(entry)] || {}; }
  function entryLevels(entry) { return entryExtras(entry).levels || []; }
  function entryNote(entry) { return entryExtras(entry).note || ""; }
  // Older reports and SCT's own entries have no score: null, shown empty and sorted last.
  function entryScore(entry) {
    const score = entryExtras(entry).score;
    return typeof score === "number" ? score : null;
  }
  function entryFlags(entry) { return entryExtras(entry).flags || []; }
  function scoreText(entry) { const score = entryScore(entry); return score === null ? "" : score.toFixed(2); }
  function qualityText(entry) {
    if (entryScore(entry) === null) return "";
    const worst = entryExtras(entry).worst_level;
    const flags = entryFlags(entry);
    return "score " + scoreText(entry) + (worst ? " (worst " + worst + ")" : "") +
      (flags.length ? "; flags: " + flags.join(", ") : "");
  }

  /** `list` by score in `direction` (1: lowest first), entries without a score after, each group as written. */
  function sortedByScore(list, direction) {
    return list.map(function (entry, position) { return [entry, position]; }).sort(function (a, b) {
      const x = entryScore(a[0]), y = entryScore(b[0]);
      if (x === null || y === null) return (x === null) - (y === null) || a[1] - b[1];
      return direction * (x - y) || a[1] - b[1];
    }).map(function (pair) { return pair[0]; });
  }

  function fillOptions(select, values) {
    values.forEach(function (value) {
      const option = document.createElement("option");
      option.value = value; option.textContent = value; select.appendChild(option);
    });
  }
  fillOptions(subjectFilter, Array.from(new Set(entries.map(function (e) { return e.subject; }))).sort());
  fillOptions(levelFilter, Array.from(new Set([].concat.apply([], entries.map(entryLevels)))).sort());

  function matches(entry) {
    if (subjectFilter.value && entry.subject !== subjectFilter.value) return false;
    if (levelFilter.value && entryLevels(entry).indexOf(levelFilter.value) < 0) return false;
    const text = textFilter.value.trim().toLowerCase();
    return !text || Object.values(entry).concat(entryFlags(entry)).join(" ").toLowerCase().indexOf(text) >= 0;
  }

  function render() {
    visible = entries.filter(matches);
    if (scoreOrder) visible = sortedByScore(visible, scoreOrder);
    body.innerHTML = "";
    visible.forEach(function (entry, index) {
      const row = document.createElement("tr");
      const mark = marks[entryId(entry)] || "";
      [index + 1, entry.dataset, entry.subject, entry.contrast, entry.command, entry.plane, entry.inputFile,
       entry.date, mark, entryNote(entry), scoreText(entry), entryFlags(entry).join(", ")
      ].forEach(function (value, column) {
        const cell = document.createElement("td");
        cell.textContent = value;
        if (column === 8) { cell.className = mark ? "qc-" + mark : ""; cell.dataset.role = "mark"; }
        if (column === 9) { cell.className = "qc-note"; cell.dataset.role = "note"; }
        if (column === 10) {
          cell.className = "qc-score"; cell.dataset.role = "score";
          if (entryExtras(entry).worst_level) cell.title = "worst level " + entryExtras(entry).worst_level;
        }
        if (column === 11) { cell.className = "qc-flags"; cell.dataset.role = "flags"; }
        row.appendChild(cell);
      });
      row.addEventListener("click", function () { select(index); });
      body.appendChild(row);
    });
    if (selected >= visible.length) selected = visible.length - 1;
    if (selected >= 0) select(selected);
  }

  function select(index) {
    if (index < 0 || index >= visible.length) return;
    selected = index;
    Array.from(body.rows).forEach(function (row, i) { row.classList.toggle("selected", i === index); });
    body.rows[index].scrollIntoView({ block: "nearest" });
    const entry = visible[index];
    document.getElementById("background").src = entry.backgroundImage;
    overlay.src = entry.overlayImage;
    document.getElementById("caption").textContent =
      entry.subject + " / " + entry.inputFile + " / " + entry.plane + " — " + entry.cmdline +
      (entryNote(entry) ? " — " + entryNote(entry) : "") + (qualityText(entry) ? " — " + qualityText(entry) : "");
  }

  /** A click on the Score header: lowest first, then highest first, and so on; the entry shown stays selected. */
  function sortByScore() {
    const shown = selected >= 0 ? visible[selected] : null;
    scoreOrder = scoreOrder === 1 ? -1 : 1;
    scoreHeader.setAttribute("aria-sort", scoreOrder === 1 ? "ascending" : "descending");
    scoreHeader.textContent = "Score " + (scoreOrder === 1 ? "\u25B2" : "\u25BC");
    selected = -1;
    render();
    if (shown) select(visible.indexOf(shown));
  }

  function setMark(value) {
    if (selected < 0) return;
    const id = entryId(visible[selected]);
    if (value) { marks[id] = value; } else { delete marks[id]; }
    localStorage.setItem(storageKey, JSON.stringify(marks));
    const keep = selected;
    render();
    select(keep);
  }

  function exportFailing() {
    const subjects = entries.filter(function (e) { return marks[entryId(e)] === "fail"; })
      .map(function (e) { return e.subject; });
    const text = Array.from(new Set(subjects)).sort().join("\n");
    document.getElementById("export").value = text;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text + "\n"], { type: "text/plain" }));
    link.download = "qc_fail_subjects.txt";
    link.click();
  }

  document.addEventListener("keydown", function (event) {
    if (event.target === textFilter) return;
    const actions = {
      ArrowDown: function () { select(selected + 1); }, j: function () { select(selected + 1); },
      ArrowUp: function () { select(selected - 1); }, k: function () { select(selected - 1); },
      " ": function () { overlay.classList.toggle("hidden"); },
      p: function () { setMark("pass"); }, f: function () { setMark("fail"); },
      a: function () { setMark("artifact"); }, "0": function () { setMark(""); },
    };
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  });
  [subjectFilter, levelFilter, textFilter].forEach(function (control) {
    ["input", "change"].forEach(function (type) {
      control.addEventListener(type, function () { selected = -1; render(); });
    });
  });
  document.getElementById("export-button").addEventListener("click", exportFailing);
  scoreHeader.addEventListener("click", sortByScore);
  render();
  if (visible.length) select(0);
})();
