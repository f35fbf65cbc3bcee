// sct_rootlets_review: the page. NiiVue (vendored, global `niivue`) shows the image; the rootlets are its drawing
// layer, so NiiVue's pen paints and erases them in a slice; the 3D brush, piece tools, fill between slices, undo and
// redo work on the same layer. A save uploads the drawing as NIfTI with the version of the correction this tab
// loaded, so that a save from a stale tab is refused by the server.
'use strict';

(() => {
  const token = document.querySelector('meta[name="review-token"]').content;
  history.replaceState(null, '', '/'); // the token leaves the address bar (the cookie and this page keep it)
  const $ = (selector) => document.querySelector(selector);
  const ST = niivue.SLICE_TYPE;

  // Eight hues far apart, none near the cord overlay's green: SCT's QC cycle repeats white for C2 and T1 and
  // paints C7 green, on top of the green cord (issue 28). The QC pictures keep SCT's colours.
  const LEVEL_COLOURS = { 2: '#E6194B', 3: '#F58231', 4: '#FFE119', 5: '#4363D8', 6: '#F032E6', 7: '#42D4F4',
    8: '#A070FF', 9: '#FABED4' };
  const CORD_OPACITY = 0.25;
  // Window from the canal (the cord mask dilated by this much along each axis: a box) or the whole image: robust
  // percentiles, not min/max, and high enough that the CSF around the cord is not saturated.
  const CANAL_MM = 5;
  const WINDOW_PERCENTILES = [0.5, 99.9];
  const LAYOUTS = ['planes', 'sagittal', 'axial', 'coronal'];
  const SINGLE = { sagittal: ST.SAGITTAL, axial: ST.AXIAL, coronal: ST.CORONAL };
  const MAX_REDO = 32;

  const state = {
    session: null, index: -1, loadedIndex: -1, loading: false, version: 'none', source: '',
    tool: 'navigate', level: 2, depth: 0, clean: null, redo: [], drafts: new Map(), views: new Map(),
    labelsShown: true, opacity: 0.85, outline: false, hidden: new Set(), cordShown: true,
    layout: 0, show3D: false, plane: ST.SAGITTAL, brushSize: 1, sphere: false, defaultWindow: null,
    saving: false, lastSave: null, stroke: null,
  };

  const nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false, dragAndDropEnabled: false,
    maxDrawUndoBitmaps: 64, penSize: 1,
    viewModeHotKey: 'None', clipPlaneHotKey: 'None', cycleClipPlaneHotKey: 'None', loadingText: '',
    logLevel: 'warn', isOrientCube: false, crosshairColor: [0.9, 0.1, 0.1, 0.6], crosshairWidth: 0.2,
  });
  // Right drag: window/level by mouse movement alone (NiiVue's 'contrast' box does nothing on PSR-stored scans);
  // middle or Shift+left drag: pan. With no drag mode of 'pan', the wheel scrolls slices; Ctrl+wheel zooms (ours).
  nv.setDragMode('windowing');
  nv.setMouseEventConfig({
    leftButton: { primary: niivue.DRAG_MODE.crosshair, withShift: niivue.DRAG_MODE.pan },
    rightButton: niivue.DRAG_MODE.windowing, centerButton: niivue.DRAG_MODE.pan,
  });

  // --- small helpers ---------------------------------------------------------------------------------------

  function status(message, kind = 'info') {
    const box = $('#status');
    box.textContent = message;
    box.dataset.kind = kind;
  }

  async function api(path, options = {}) {
    const headers = { 'X-Review-Token': token, ...(options.headers || {}) };
    return fetch(path, { ...options, headers, credentials: 'same-origin' });
  }

  async function errorText(response) {
    try {
      return (await response.json()).error || response.statusText;
    } catch (e) {
      return `${response.status} ${response.statusText}`;
    }
  }

  function hexToRgb(hex) {
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }

  function levelName(value) {
    const level = state.session.levels.find((l) => l.value === value);
    return level ? level.name : String(value);
  }

  /** NiiVue label colormap of the drawing: 0 transparent, each level in its colour, hidden levels transparent. */
  function levelColormap() {
    const cmap = { R: [0, 128], G: [0, 128], B: [0, 128], A: [0, 255], I: [0, 1], labels: ['', 'lvl1'] };
    for (const level of state.session.levels) {
      const [r, g, b] = hexToRgb(LEVEL_COLOURS[level.value]);
      cmap.R.push(r); cmap.G.push(g); cmap.B.push(b); cmap.I.push(level.value);
      cmap.A.push(state.hidden.has(level.value) ? 0 : 255);
      cmap.labels.push(level.name);
    }
    return cmap;
  }

  function sameBitmap(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /** Unsaved edits: the drawing differs from what was loaded or last saved (undoing back to it is clean). */
  function isDirty() {
    return state.loadedIndex >= 0 && state.loadedIndex === state.index && !sameBitmap(nv.drawBitmap, state.clean);
  }

  // --- the list ---------------------------------------------------------------------------------------------

  function scoreText(quality) {
    return quality ? quality.score.toFixed(2) : '–';
  }

  function scoreTitle(quality) {
    if (!quality) return 'no quality record in the prediction\'s sidecar';
    const levels = Object.entries(quality.levels).map(([name, score]) => `${name} ${score.toFixed(2)}`);
    return `score ${quality.score.toFixed(2)}${quality.worst_level ? `, worst level ${quality.worst_level}` : ''}`
      + `${levels.length ? `\nper level: ${levels.join(', ')}` : ''}`;
  }

  function flagText(flag) {
    return `${flag.name}${flag.level ? ` (${flag.level})` : ''}: ${flag.message}`;
  }

  /** The flags' names, once each, their messages in the tooltip. */
  function flagLine(flags) {
    const line = document.createElement('span');
    line.className = 'flags';
    const messages = new Map();
    for (const flag of flags) messages.set(flag.name, [...(messages.get(flag.name) || []), flagText(flag)]);
    for (const [name, texts] of messages) {
      const span = document.createElement('span');
      span.className = 'flag';
      span.textContent = name;
      span.title = texts.join('\n');
      line.append(span, ' ');
    }
    return line;
  }

  function renderList() {
    const body = $('#items tbody');
    body.replaceChildren();
    state.session.items.forEach((item, index) => {
      const row = document.createElement('tr');
      row.dataset.index = index;
      if (index === state.index) row.classList.add('selected');
      const cell = (text, className = '', title = '') => {
        const td = document.createElement('td');
        td.textContent = text;
        td.className = className;
        if (title) td.title = title;
        row.appendChild(td);
        return td;
      };
      cell(String(index + 1));
      const image = cell(item.key);
      if (item.quality && item.quality.flags.length) image.appendChild(flagLine(item.quality.flags));
      cell(scoreText(item.quality), 'score', scoreTitle(item.quality));
      cell(item.mark || '', item.mark || '');
      const draft = state.drafts.has(index);
      cell(draft ? '●' : (item.corrected ? '✓' : ''), '', draft ? 'unsaved edits kept in this tab' : '');
      row.addEventListener('click', () => go(index));
      body.appendChild(row);
    });
    const selected = body.querySelector('tr.selected');
    if (selected) selected.scrollIntoView({ block: 'nearest' });
  }

  function renderItem() {
    const item = state.session.items[state.index];
    $('#position').textContent = `${state.index + 1} / ${state.session.items.length}  ·  ${item.key}`;
    $('#image-name').textContent = `${item.name} (${state.source || '…'})`;
    for (const button of document.querySelectorAll('[data-mark]')) {
      button.classList.toggle('active', button.dataset.mark === item.mark);
    }
    renderQuality(item.quality);
  }

  /** The current image's score, its worst level and every flag's message, beside its name. */
  function renderQuality(quality) {
    const box = $('#quality');
    box.replaceChildren();
    if (!quality) {
      box.textContent = 'No quality score.';
      return;
    }
    const worst = quality.worst_level;
    box.append(`Score ${quality.score.toFixed(2)}`
      + `${worst ? ` · worst ${worst} ${quality.levels[worst].toFixed(2)}` : ''}`);
    if (!quality.flags.length) return;
    const list = document.createElement('ul');
    for (const flag of quality.flags) {
      const entry = document.createElement('li');
      entry.className = 'flag';
      entry.textContent = flagText(flag);
      list.appendChild(entry);
    }
    box.appendChild(list);
  }

  function renderTools() {
    for (const button of document.querySelectorAll('[data-tool]')) {
      button.classList.toggle('active', button.dataset.tool === state.tool);
    }
    for (const button of document.querySelectorAll('button.level')) {
      const value = Number(button.dataset.level);
      button.classList.toggle('active', value === state.level && !['erase', 'erase-piece'].includes(state.tool));
      button.classList.toggle('hidden-level', state.hidden.has(value));
    }
    $('#brush').textContent = `Brush ${state.brushSize} vox ${state.sphere ? '3D ball' : '2D square'}`;
    $('#outline').classList.toggle('active', state.outline);
    $('#cord').classList.toggle('active', state.cordShown);
    $('#three-d').classList.toggle('active', state.show3D);
    $('#opacity').value = Math.round(state.opacity * 100);
    renderWindow();
  }

  function renderWindow() {
    if (!nv.volumes.length) return;
    $('#win-min').value = Math.round(nv.volumes[0].cal_min);
    $('#win-max').value = Math.round(nv.volumes[0].cal_max);
  }

  // --- window (contrast) --------------------------------------------------------------------------------------

  function percentiles(values, ps) {
    values.sort();
    return ps.map((p) => values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]);
  }

  /** Max filter of a 0/1 mask along one axis of a 3D grid, `radius` voxels each side (a running count). */
  function dilateAxis(mask, dims, axis, radius) {
    if (radius < 1) return mask;
    const out = new Uint8Array(mask.length);
    const stride = [1, dims[0], dims[0] * dims[1]][axis];
    const n = dims[axis];
    for (let start = 0; start < mask.length; start++) {
      if (Math.floor(start / stride) % n !== 0) continue; // one line per start on the axis' first voxel
      let count = 0;
      for (let i = 0; i < Math.min(radius, n); i++) count += mask[start + i * stride];
      for (let i = 0; i < n; i++) {
        if (i + radius < n) count += mask[start + (i + radius) * stride];
        if (i - radius - 1 >= 0) count -= mask[start + (i - radius - 1) * stride];
        if (count > 0) out[start + i * stride] = 1;
      }
    }
    return out;
  }

  /** The default window: percentiles inside the canal (cord mask dilated by a box of CANAL_MM), else of the image's
   *  non-zero voxels. Both volumes are read in the file's own voxel order (same grid), so any storage works. */
  function defaultWindow() {
    const image = nv.volumes[0];
    const slope = image.hdr.scl_slope || 1;
    const inter = image.hdr.scl_inter || 0;
    const dims = image.hdr.dims.slice(1, 4);
    const voxels = dims[0] * dims[1] * dims[2];
    let canal = null;
    if (nv.volumes.length > 1) {
      let mask = Uint8Array.from(nv.volumes[1].img.subarray(0, voxels), (v) => (v > 0 ? 1 : 0));
      if (mask.some((v) => v)) {
        for (let axis = 0; axis < 3; axis++) {
          mask = dilateAxis(mask, dims, axis, Math.round(CANAL_MM / Math.abs(image.hdr.pixDims[axis + 1] || 1)));
        }
        canal = mask;
      }
    }
    const values = [];
    for (let i = 0; i < voxels; i++) {
      const v = image.img[i];
      if (canal ? canal[i] : v !== 0) values.push(v * slope + inter);
    }
    if (values.length < 2) return [image.cal_min, image.cal_max];
    const [low, high] = percentiles(Float64Array.from(values), WINDOW_PERCENTILES);
    return high > low ? [low, high] : [image.cal_min, image.cal_max];
  }

  function setWindow(low, high) {
    if (!(high > low)) return;
    nv.volumes[0].cal_min = low;
    nv.volumes[0].cal_max = high;
    nv.updateGLVolume();
    renderWindow();
  }

  // --- views: layout, zoom, pan, slices ---------------------------------------------------------------------

  /** Field of view in mm along R, A, S. */
  function extentMM() {
    const dims = nv.back.dimsRAS;
    const pix = nv.back.pixDimsRAS;
    return [1, 2, 3].map((a) => dims[a] * pix[a]);
  }

  /** Every way to split `items` into groups (set partitions): 5 for three tiles, 15 for four. */
  function partitions(items) {
    if (!items.length) return [[]];
    const [first, ...rest] = items;
    const out = [];
    for (const partition of partitions(rest)) {
      out.push([[first], ...partition]);
      partition.forEach((_, i) => out.push(partition.map((group, j) => (i === j ? [first, ...group] : group))));
    }
    return out;
  }

  /** The three planes (and the 3D rendering if asked) at one scale, grouped in rows or in columns, whichever
   *  arrangement draws them largest: narrow fields of view (52 mm left-right) then fill the canvas instead of
   *  leaving half of it black. The rendering gets a square half the largest extent: it is for orientation. */
  function planesLayout() {
    const [x, y, z] = extentMM();
    const tiles = [[ST.SAGITTAL, y, z], [ST.CORONAL, x, z], [ST.AXIAL, x, y]];
    if (state.show3D) tiles.push([ST.RENDER, Math.max(x, y, z) / 2, Math.max(x, y, z) / 2]);
    const width = nv.canvas.clientWidth;
    const height = nv.canvas.clientHeight;
    let best = null;
    for (const rows of [true, false]) {
      // rows: groups stacked top to bottom, their tiles side by side; columns: the same, transposed
      const along = (t) => (rows ? tiles[t][1] : tiles[t][2]);
      const across = (t) => (rows ? tiles[t][2] : tiles[t][1]);
      const [spanAlong, spanAcross] = rows ? [width, height] : [height, width];
      for (const groups of partitions(tiles.map((_, t) => t))) {
        const groupAlong = groups.map((g) => g.reduce((sum, t) => sum + along(t), 0));
        const groupAcross = groups.map((g) => Math.max(...g.map(across)));
        const scale = Math.min(spanAlong / Math.max(...groupAlong),
          spanAcross / groupAcross.reduce((sum, v) => sum + v, 0));
        if (!best || scale > best.scale) best = { scale, rows, groups, groupAlong, groupAcross, along };
      }
    }
    // fractions of the canvas; the last of each run ends exactly at 1 (NiiVue clips, with a warning, past it)
    const totalAcross = best.groupAcross.reduce((sum, v) => sum + v, 0);
    const cells = [];
    let offset = 0;
    best.groups.forEach((group, g) => {
      const size = g === best.groups.length - 1 ? 1 - offset : best.groupAcross[g] / totalAcross;
      let position = 0;
      group.forEach((t, n) => {
        const share = n === group.length - 1 ? 1 - position : best.along(t) / best.groupAlong[g];
        cells.push({ sliceType: tiles[t][0],
          position: best.rows ? [position, offset, share, size] : [offset, position, size, share] });
        position += share;
      });
      offset += size;
    });
    return cells;
  }

  function applyLayout() {
    if (!nv.back) return; // nothing loaded yet: the layout follows with the image
    const layout = LAYOUTS[state.layout];
    if (layout === 'planes') {
      nv.setCustomLayout(planesLayout());
    } else {
      nv.clearCustomLayout();
      nv.setSliceType(SINGLE[layout]);
      state.plane = SINGLE[layout];
    }
    $('#layout').textContent = `Layout: ${layout}${layout === 'planes' && state.show3D ? ' + 3D' : ''}`;
    nv.drawScene();
  }

  function cycleLayout() {
    state.layout = (state.layout + 1) % LAYOUTS.length;
    applyLayout();
  }

  function toggle3D() {
    state.show3D = !state.show3D;
    state.layout = 0;
    applyLayout();
    renderTools();
  }

  /** Zoom by `factor` keeping the world point `mm` (default: the cross-hair) where it is on the screen. */
  function zoomBy(factor, mm = nv.frac2mm(nv.scene.crosshairPos)) {
    const pan = nv.scene.pan2Dxyzmm;
    const zoom = Math.min(Math.max(pan[3] * factor, 0.5), 40);
    const change = pan[3] - zoom;
    for (let a = 0; a < 3; a++) pan[a] += change * mm[a];
    pan[3] = zoom;
    nv.drawScene();
  }

  /** Pan by a fraction of the field of view, along the screen axes of the current plane. */
  function panBy(right, up) {
    const [horizontal, vertical] = { [ST.AXIAL]: [0, 1], [ST.CORONAL]: [0, 2], [ST.SAGITTAL]: [1, 2] }[state.plane];
    const extent = extentMM();
    const pan = nv.scene.pan2Dxyzmm;
    pan[horizontal] += (right * extent[horizontal] * 0.1) / pan[3];
    pan[vertical] += (up * extent[vertical] * 0.1) / pan[3];
    nv.drawScene();
  }

  function resetView() {
    nv.scene.pan2Dxyzmm = [0, 0, 0, 1];
    nv.drawScene();
  }

  /** One slice (or `n`) up or down in the current plane: the single view's, or the tile last under the mouse. */
  function moveSlice(n) {
    const step = { [ST.SAGITTAL]: [n, 0, 0], [ST.CORONAL]: [0, n, 0], [ST.AXIAL]: [0, 0, n] }[state.plane];
    nv.moveCrosshairInVox(...step);
  }

  // --- loading an image -------------------------------------------------------------------------------------

  async function load(index) {
    state.loading = true;
    state.index = index;
    renderList();
    const item = state.session.items[index];
    status(`Loading ${item.key}…`);
    try {
      const volumes = [{ url: item.image_url, name: item.image_url.split('/').pop() }];
      if (item.cord_url) {
        volumes.push({ url: item.cord_url, name: item.cord_url.split('/').pop(), colormap: 'green',
          opacity: state.cordShown ? CORD_OPACITY : 0, cal_min: 0.5, cal_max: 1 });
      }
      await nv.loadVolumes(volumes);
      const response = await api(item.labels_url);
      if (!response.ok) throw new Error(await errorText(response));
      state.version = response.headers.get('X-Review-Version');
      state.source = response.headers.get('X-Review-Source');
      const labels = await niivue.NVImage.loadFromUrl({ url: await response.arrayBuffer(), name: 'labels.nii.gz' });
      if (!nv.loadDrawing(labels)) throw new Error('the labels are not on the image\'s grid');
      nv.setDrawColormap(levelColormap());
      state.clean = nv.drawBitmap.slice();
      state.depth = 0;
      state.redo = [];
      const draft = state.drafts.get(index);
      if (draft) restoreDraft(draft);
      state.drafts.delete(index);
      state.loadedIndex = index;
      state.defaultWindow = defaultWindow();
      const view = state.views.get(index);
      nv.scene.pan2Dxyzmm = view ? view.pan.slice() : [0, 0, 0, 1];
      setWindow(...(view ? view.window : state.defaultWindow));
      applyLabelDisplay();
      applyLayout();
      centreOnLabels();
      setTool(state.tool);
      renderList();
      renderItem();
      status(`${item.key}: ${draft ? 'your unsaved edits, kept in this tab' : (state.source === 'correction'
        ? 'your saved correction' : 'the prediction')} (${countLabelled()} labelled voxels).`);
    } catch (error) {
      status(`Cannot load ${item.key}: ${error.message || error}`, 'error');
    } finally {
      state.loading = false;
    }
  }

  /** Edits left unsaved on another image: put them back, on top of what was loaded (undo returns to that). */
  function restoreDraft(draft) {
    nv.drawBitmap.set(draft.bitmap);
    state.version = draft.version; // a save still checks against the version the edits started from
    nv.drawAddUndoBitmap();
    nv.refreshDrawing(true);
    state.depth = 1;
  }

  function countLabelled() {
    let n = 0;
    for (const value of nv.drawBitmap) if (value) n += 1;
    return n;
  }

  /** Put the cross-hair on the middle labelled voxel, so that the first slices shown hold rootlets. */
  function centreOnLabels() {
    const [, nx, ny] = nv.back.dims;
    const labelled = [];
    nv.drawBitmap.forEach((value, index) => { if (value) labelled.push(index); });
    if (!labelled.length) return;
    const index = labelled[Math.floor(labelled.length / 2)];
    const vox = [index % nx, Math.floor(index / nx) % ny, Math.floor(index / (nx * ny))];
    nv.scene.crosshairPos = nv.vox2frac(vox);
    nv.drawScene();
  }

  /** Another image. Unsaved edits are never lost: they stay in this tab as a draft (● in the list) and come back
   *  when the image is opened again; closing the tab with drafts asks first. */
  async function go(index) {
    if (!state.session || index < 0 || index >= state.session.items.length || state.loading) return;
    if (index === state.index && state.loadedIndex === index) return;
    if (state.loadedIndex === state.index && state.index >= 0) {
      state.views.set(state.index, { pan: Array.from(nv.scene.pan2Dxyzmm),
        window: [nv.volumes[0].cal_min, nv.volumes[0].cal_max] });
      if (isDirty()) state.drafts.set(state.index, { bitmap: nv.drawBitmap.slice(), version: state.version });
    }
    await load(index);
  }

  /** The worst image not yet reviewed: the lowest score among those neither marked nor corrected (this one
   *  aside), then those without a score in list order; -1 when there is none. */
  function worstUnreviewed() {
    const items = state.session.items;
    const score = (i) => (items[i].quality ? items[i].quality.score : Infinity);
    const open = items.map((_, i) => i).filter((i) => i !== state.index && !items[i].mark && !items[i].corrected);
    open.sort((a, b) => score(a) - score(b) || a - b);
    return open.length ? open[0] : -1;
  }

  async function nextWorst() {
    const index = worstUnreviewed();
    if (index < 0) status('Every other image is marked or corrected.', 'ok');
    else await go(index);
  }

  /** Open this image again from disk (the newest correction, e.g. after a refused save), dropping its unsaved
   *  edits once confirmed. */
  async function reload() {
    if (state.loading || (isDirty() && !window.confirm('Discard the unsaved edits of this image and reload it?'))) {
      return;
    }
    state.drafts.delete(state.index);
    await load(state.index);
  }

  // --- tools ------------------------------------------------------------------------------------------------

  const TOOL_NAMES = {
    navigate: () => 'navigate: click to move the cross-hair',
    erase: () => `erase: drag on a slice (brush ${state.brushSize}${state.sphere ? ', 3D ball' : ''})`,
    paint: () => `paint level ${levelName(state.level)}: drag on a slice (brush ${state.brushSize}`
      + `${state.sphere ? ', 3D ball' : ''})`,
    relabel: () => `relabel: click a rootlet to make its connected piece ${levelName(state.level)}`,
    'erase-piece': () => 'erase piece: click a rootlet to erase its connected piece',
  };

  function brushTool() {
    return state.tool === 'paint' || state.tool === 'erase';
  }

  function setTool(tool, level) {
    if (level !== undefined) state.level = level;
    state.tool = tool;
    nv.setPenValue(tool === 'paint' ? state.level : 0, false);
    nv.opts.penSize = state.brushSize;
    // NiiVue's pen paints the 2D square; the 3D ball is ours (mouse handlers below). Nothing paints unseen.
    nv.setDrawingEnabled(brushTool() && !state.sphere && state.labelsShown);
    renderTools();
    if (state.loading || state.loadedIndex < 0) return;
    if (!state.labelsShown && tool !== 'navigate') status('Labels hidden: show them (space) to edit.', 'error');
    else status(`Tool: ${TOOL_NAMES[tool]()}.`);
  }

  function setBrush(size, sphere = state.sphere) {
    state.brushSize = Math.min(Math.max(size, 1), 15);
    state.sphere = sphere;
    setTool(state.tool);
  }

  function edited() {
    state.depth = Math.min(state.depth + 1, nv.opts.maxDrawUndoBitmaps - 1);
    state.redo = [];
  }

  nv.onDrawingChanged = (action) => { if (action === 'draw') edited(); };

  function undo() {
    if (state.depth < 1) {
      status('Nothing to undo.');
      return;
    }
    state.redo.push(nv.drawBitmap.slice());
    if (state.redo.length > MAX_REDO) state.redo.shift();
    nv.drawUndo();
    state.depth -= 1;
    status(isDirty() ? 'Undone.' : 'Undone: back to what was loaded or saved.');
  }

  function redo() {
    const next = state.redo.pop();
    if (!next) {
      status('Nothing to redo.');
      return;
    }
    nv.drawBitmap.set(next);
    nv.drawAddUndoBitmap();
    nv.refreshDrawing(true);
    state.depth = Math.min(state.depth + 1, nv.opts.maxDrawUndoBitmaps - 1);
    status('Redone.');
  }

  /** Give the 26-connected piece of equal label holding RAS voxel (x, y, z) `value` (0 erases it); returns the
   *  voxels changed. */
  function relabelAt(x, y, z, value = state.level) {
    const [, nx, ny, nz] = nv.back.dims;
    const bitmap = nv.drawBitmap;
    const seed = x + y * nx + z * nx * ny;
    const old = bitmap[seed];
    if (!old || old === value) return 0;
    const stack = [seed];
    bitmap[seed] = value;
    let changed = 0;
    while (stack.length) {
      const index = stack.pop();
      changed += 1;
      const cx = index % nx; const cy = Math.floor(index / nx) % ny; const cz = Math.floor(index / (nx * ny));
      for (let dz = -1; dz <= 1; dz++) {
        const zz = cz + dz;
        if (zz < 0 || zz >= nz) continue;
        for (let dy = -1; dy <= 1; dy++) {
          const yy = cy + dy;
          if (yy < 0 || yy >= ny) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const xx = cx + dx;
            if (xx < 0 || xx >= nx) continue;
            const next = xx + yy * nx + zz * nx * ny;
            if (bitmap[next] === old) {
              bitmap[next] = value;
              stack.push(next);
            }
          }
        }
      }
    }
    nv.drawAddUndoBitmap();
    nv.refreshDrawing(true);
    edited();
    return changed;
  }

  function crosshairVoxel() {
    return Array.from(nv.frac2vox(nv.scene.crosshairPos)).map((v) => Math.round(v));
  }

  function pieceAtCrosshair() {
    const [x, y, z] = crosshairVoxel();
    const value = state.tool === 'erase-piece' ? 0 : state.level;
    const changed = relabelAt(x, y, z, value);
    if (!changed) status('No rootlet to change under the cross-hair: click on one.');
    else if (value) status(`Relabelled ${changed} voxels to ${levelName(value)}.`);
    else status(`Erased a piece of ${changed} voxels.`);
    return changed;
  }

  /** Paint (or erase) a ball of `state.brushSize` voxels across, in mm so anisotropic voxels keep it round. */
  function paintBall(centre, value) {
    const [, nx, ny, nz] = nv.back.dims;
    const pix = nv.back.pixDimsRAS.slice(1, 4);
    const radiusMM = (state.brushSize / 2) * Math.min(...pix);
    const reach = pix.map((p) => Math.floor(radiusMM / p));
    const bitmap = nv.drawBitmap;
    for (let dz = -reach[2]; dz <= reach[2]; dz++) {
      for (let dy = -reach[1]; dy <= reach[1]; dy++) {
        for (let dx = -reach[0]; dx <= reach[0]; dx++) {
          const d2 = (dx * pix[0]) ** 2 + (dy * pix[1]) ** 2 + (dz * pix[2]) ** 2;
          const [x, y, z] = [centre[0] + dx, centre[1] + dy, centre[2] + dz];
          if (d2 > radiusMM ** 2 || x < 0 || y < 0 || z < 0 || x >= nx || y >= ny || z >= nz) continue;
          const index = x + y * nx + z * nx * ny;
          bitmap[index] = value;
        }
      }
    }
  }

  /** Canvas position of a mouse event in device pixels, and the tile it is over (or null). */
  function pointer(event) {
    const rect = nv.canvas.getBoundingClientRect();
    const dpr = nv.uiData.dpr || 1;
    const xy = [(event.clientX - rect.left) * dpr, (event.clientY - rect.top) * dpr];
    const tile = nv.tileIndex(...xy);
    const frac = nv.canvasPos2frac(xy);
    if (tile < 0 || !nv.screenSlices[tile] || nv.screenSlices[tile].axCorSag > ST.SAGITTAL || frac[0] < 0) {
      return null;
    }
    return { frac, plane: nv.screenSlices[tile].axCorSag, vox: Array.from(nv.frac2vox(frac)).map(Math.round) };
  }

  function strokeTo(vox) {
    const value = state.tool === 'paint' ? state.level : 0;
    const from = state.stroke.last || vox;
    const steps = Math.max(1, ...vox.map((v, a) => Math.abs(v - from[a])));
    for (let s = 1; s <= steps; s++) {
      paintBall(vox.map((v, a) => Math.round(from[a] + ((v - from[a]) * s) / steps)), value);
    }
    state.stroke.last = vox;
    nv.refreshDrawing(true);
  }

  function ballMouseDown(event) {
    if (event.button !== 0 || event.shiftKey || !brushTool() || !state.sphere || !state.labelsShown) return;
    const hit = pointer(event);
    if (!hit) return;
    event.stopPropagation(); // NiiVue must not move the cross-hair (and so the slices) under the stroke
    event.preventDefault();
    state.stroke = { last: null };
    strokeTo(hit.vox);
  }

  function onMouseMove(event) {
    const hit = pointer(event);
    if (hit) {
      state.plane = LAYOUTS[state.layout] === 'planes' ? hit.plane : state.plane;
      readout(hit);
    }
    if (!state.stroke) return;
    event.stopPropagation();
    if (hit && event.buttons & 1) strokeTo(hit.vox);
  }

  function ballMouseUp(event) {
    if (!state.stroke) return;
    event.stopPropagation();
    state.stroke = null;
    nv.drawAddUndoBitmap();
    edited();
  }

  /** Fill the current level between the nearest slices holding it on either side of the cross-hair, in the
   *  current plane: NiiVue's shape interpolation (not intensity-guided, so the result is the painted shapes
   *  blended, nothing else), run on that level alone and never over another level. */
  function fillBetween() {
    if (!state.labelsShown) {
      status('Labels hidden: show them (space) to edit.', 'error');
      return 0;
    }
    const [, nx, ny, nz] = nv.back.dims;
    const axis = { [ST.SAGITTAL]: 0, [ST.CORONAL]: 1, [ST.AXIAL]: 2 }[state.plane];
    const n = [nx, ny, nz][axis];
    const bitmap = nv.drawBitmap;
    const has = new Uint8Array(n);
    const only = new Uint8Array(bitmap.length);
    for (let i = 0; i < bitmap.length; i++) {
      if (bitmap[i] !== state.level) continue;
      only[i] = state.level;
      has[[i % nx, Math.floor(i / nx) % ny, Math.floor(i / (nx * ny))][axis]] = 1;
    }
    const here = crosshairVoxel()[axis];
    let low = here;
    while (low >= 0 && !has[low]) low -= 1;
    let high = has[here] ? here + 1 : here;
    while (high < n && !has[high]) high += 1;
    if (low < 0 || high >= n || high - low < 2) {
      status(`Fill: no gap in ${levelName(state.level)} around the cross-hair (paint it on a slice either side).`,
        'error');
      return 0;
    }
    nv.drawBitmap = only;
    try {
      nv.interpolateMaskSlices(low, high, { sliceType: state.plane, useIntensityGuided: false,
        applySmoothingToSlices: false });
    } finally {
      nv.drawBitmap = bitmap;
    }
    let changed = 0;
    for (let i = 0; i < bitmap.length; i++) {
      if (only[i] === state.level && bitmap[i] === 0) {
        bitmap[i] = state.level;
        changed += 1;
      }
    }
    nv.drawAddUndoBitmap();
    nv.refreshDrawing(true);
    edited();
    status(`Filled ${changed} voxels of ${levelName(state.level)} between slices ${low} and ${high}.`);
    return changed;
  }

  // --- what is shown ----------------------------------------------------------------------------------------

  function applyLabelDisplay() {
    const opacity = state.labelsShown ? state.opacity : 0;
    // Outline: NiiVue's rim at the chosen opacity, the inside all but clear (it must stay above 0 to be drawn).
    nv.drawRimOpacity = state.outline && opacity > 0 ? opacity : -1;
    nv.setDrawOpacity(state.outline && opacity > 0 ? 0.001 : opacity);
  }

  function toggleLabels() {
    state.labelsShown = !state.labelsShown;
    applyLabelDisplay();
    setTool(state.tool);
  }

  function toggleLevel(value) {
    if (state.hidden.has(value)) state.hidden.delete(value);
    else state.hidden.add(value);
    nv.setDrawColormap(levelColormap());
    renderTools();
    status(`${levelName(value)} ${state.hidden.has(value) ? 'hidden' : 'shown'}.`);
  }

  function toggleCord() {
    state.cordShown = !state.cordShown;
    if (nv.volumes.length > 1) nv.setOpacity(1, state.cordShown ? CORD_OPACITY : 0);
    renderTools();
  }

  function readout(hit) {
    const [x, y, z] = hit.vox;
    const [, nx, ny] = nv.back.dims;
    const label = nv.drawBitmap ? nv.drawBitmap[x + y * nx + z * nx * ny] : 0;
    const mm = Array.from(nv.back.vox2mm(hit.vox, nv.back.matRAS)).slice(0, 3).map((v) => v.toFixed(1)); // voxel centre
    const value = nv.back.getValue(x, y, z);
    $('#readout').textContent = `${label ? levelName(label) : 'no label'} · ${Math.round(value * 10) / 10}`
      + ` · (${mm.join(', ')}) mm`;
  }

  // --- voxels of the file (tests and 'go to') ---------------------------------------------------------------

  /** World (mm) position of voxel (i, j, k) of the image file (its own axis order). */
  function fileVoxelToMM(i, j, k) {
    const a = nv.volumes[0].hdr.affine;
    return [0, 1, 2].map((r) => a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3]);
  }

  function goToVoxel(i, j, k) {
    nv.scene.crosshairPos = nv.mm2frac(fileVoxelToMM(i, j, k));
    nv.drawScene();
    return Array.from(nv.scene.crosshairPos);
  }

  /** Where voxel (i, j, k) of the file is drawn in the axial (or another) tile, in CSS pixels of the canvas. */
  function voxelToCanvas(i, j, k, sliceType = ST.AXIAL) {
    const frac = goToVoxel(i, j, k);
    const hit = nv.frac2canvasPosWithTile(frac, sliceType);
    if (!hit) return null;
    const ratio = nv.uiData.dpr || window.devicePixelRatio || 1;
    return { x: hit.pos[0] / ratio, y: hit.pos[1] / ratio };
  }

  // --- saving and marks ------------------------------------------------------------------------------------

  async function gzip(bytes) {
    if (typeof CompressionStream === 'undefined') return bytes;
    const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function save() {
    if (state.loadedIndex !== state.index || state.loading || state.saving) return false;
    const item = state.session.items[state.index];
    const rater = $('#rater').value.trim();
    if (!rater) {
      status('Give your name in the Rater field before saving.', 'error');
      $('#rater').focus();
      return false;
    }
    state.saving = true;
    try {
      const saved = nv.drawBitmap.slice();
      const nifti = await nv.saveImage({ filename: '', isSaveDrawing: true });
      const body = await gzip(nifti);
      const query = `base=${encodeURIComponent(state.version)}&rater=${encodeURIComponent(rater)}`;
      const response = await api(`/api/items/${state.index}/save?${query}`, {
        method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body,
      });
      if (!response.ok) {
        const message = await errorText(response);
        state.lastSave = { ok: false, status: response.status, message };
        status(response.status === 409 ? `${message} (X reloads it.)` : message, 'error');
        return false;
      }
      const result = await response.json();
      state.version = result.version;
      state.source = 'correction';
      state.clean = saved;
      state.lastSave = { ok: true, status: response.status, ...result };
      Object.assign(item, { corrected: true });
      renderList();
      renderItem();
      status(`Saved ${result.path} (${result.voxels_changed} voxels differ from what was opened`
        + `${result.previous ? '; the version before is kept' : ''}).`, 'ok');
      return true;
    } catch (error) {
      state.lastSave = { ok: false, status: 0, message: String(error) };
      status(`Not saved: ${error.message || error}`, 'error');
      return false;
    } finally {
      state.saving = false;
    }
  }

  async function mark(value) {
    if (state.index < 0) return;
    const item = state.session.items[state.index];
    const next = item.mark === value ? '' : value;
    const response = await api(`/api/items/${state.index}/mark`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ mark: next, rater: $('#rater').value.trim() }),
    });
    if (!response.ok) {
      status(await errorText(response), 'error');
      return;
    }
    item.mark = (await response.json()).mark;
    renderList();
    renderItem();
    status(item.mark ? `${item.key} marked ${item.mark}.` : `${item.key}: mark cleared.`);
  }

  function toggleHelp(show = $('#help').hidden) {
    $('#help').hidden = !show;
  }

  // --- keyboard and buttons ---------------------------------------------------------------------------------

  /** Every key of the page. It listens first (capture) and stops every key bound for the canvas, so NiiVue's
   *  own keys (h j k l m, arrows for 4D frames) never act under ours. */
  function onKey(event) {
    if (event.target instanceof HTMLInputElement) {
      if (event.key === 'Escape' || event.key === 'Enter') event.target.blur();
      return;
    }
    const key = event.key;
    const ctrl = event.ctrlKey || event.metaKey;
    const digit = /^Digit([2-9])$/.exec(event.code);
    let handled = true;
    if (ctrl && (key === 'z' || key === 'Z')) (event.shiftKey ? redo : undo)();
    else if (ctrl && (key === 'y' || key === 'Y')) redo();
    else if (ctrl && (key === 's' || key === 'S')) save();
    else if (ctrl || event.altKey) handled = false;
    else if (digit && event.shiftKey) toggleLevel(Number(digit[1]));
    else if (/^[2-9]$/.test(key)) setTool('paint', Number(key));
    else if (key === 'e' || key === '0') setTool('erase');
    else if (key === 'r') setTool('relabel');
    else if (key === 'x') setTool('erase-piece');
    else if (key === 'i') fillBetween();
    else if (key === 'Escape') { toggleHelp(false); setTool('navigate'); }
    else if (key === 'u') undo();
    else if (key === 'U') redo();
    else if (key === 'X') reload();
    else if (key === 's') save();
    else if (key === 'p') mark('pass');
    else if (key === 'f') mark('fail');
    else if (key === 'a') mark('artifact');
    else if (key === 'j') go(state.index + 1);
    else if (key === 'k') go(state.index - 1);
    else if (key === 'n') nextWorst();
    else if (key === ' ') toggleLabels();
    else if (key === 'v') cycleLayout();
    else if (key === 't') toggle3D();
    else if (key === 'o') { state.outline = !state.outline; applyLabelDisplay(); renderTools(); }
    else if (key === 'c') toggleCord();
    else if (key === '[' || key === ']') setBrush(state.brushSize + (key === ']' ? 2 : -2));
    else if (key === 'b') setBrush(state.brushSize, !state.sphere);
    else if (key === '+' || key === '=') zoomBy(1.25);
    else if (key === '-') zoomBy(0.8);
    else if (key === 'z') resetView();
    else if (key === 'w') setWindow(...state.defaultWindow);
    else if (key === 'ArrowUp' && event.shiftKey) panBy(0, 1);
    else if (key === 'ArrowDown' && event.shiftKey) panBy(0, -1);
    else if (key === 'ArrowLeft' && event.shiftKey) panBy(-1, 0);
    else if (key === 'ArrowRight' && event.shiftKey) panBy(1, 0);
    else if (key === 'ArrowUp' || key === 'ArrowRight') moveSlice(1);
    else if (key === 'ArrowDown' || key === 'ArrowLeft') moveSlice(-1);
    else if (key === 'PageUp') moveSlice(10);
    else if (key === 'PageDown') moveSlice(-10);
    else if (key === '?' || key === 'h') toggleHelp();
    else handled = false;
    if (handled) event.preventDefault();
    if (handled || event.target === nv.canvas) event.stopPropagation();
  }

  function wireButtons() {
    for (const level of state.session.levels) {
      const button = document.createElement('button');
      button.className = 'level';
      button.dataset.level = level.value;
      button.textContent = level.name;
      button.title = `paint ${level.name} (key ${level.value}; Shift+click or Shift+${level.value}: hide)`;
      button.style.background = LEVEL_COLOURS[level.value];
      button.addEventListener('click', (event) => (event.shiftKey ? toggleLevel(level.value)
        : setTool('paint', level.value)));
      $('#levels').appendChild(button);
    }
    for (const button of document.querySelectorAll('[data-tool]')) {
      button.addEventListener('click', () => setTool(button.dataset.tool));
    }
    for (const button of document.querySelectorAll('[data-mark]')) {
      button.addEventListener('click', () => mark(button.dataset.mark));
    }
    const actions = { undo, redo, save, fill: fillBetween, layout: cycleLayout, 'three-d': toggle3D,
      cord: toggleCord, 'reset-view': resetView, 'reset-window': () => setWindow(...state.defaultWindow),
      outline: () => { state.outline = !state.outline; applyLabelDisplay(); renderTools(); },
      brush: () => setBrush(state.brushSize, !state.sphere), 'help-button': () => toggleHelp(),
      prev: () => go(state.index - 1), next: () => go(state.index + 1), 'next-worst': nextWorst };
    for (const [id, action] of Object.entries(actions)) $(`#${id}`).addEventListener('click', action);
    $('#opacity').addEventListener('input', () => {
      state.opacity = Number($('#opacity').value) / 100;
      applyLabelDisplay();
    });
    for (const id of ['#win-min', '#win-max']) {
      $(id).addEventListener('change', () => setWindow(Number($('#win-min').value), Number($('#win-max').value)));
    }
    // Controls must not keep the focus: the keys then reach the page, not the last button or slider used.
    for (const control of document.querySelectorAll('button, input[type=range]')) {
      control.addEventListener('mouseup', () => control.blur());
    }
    window.addEventListener('keydown', onKey, true);
    window.addEventListener('keyup', (event) => { if (event.target === nv.canvas) event.stopPropagation(); }, true);
    const view = $('#view');
    view.addEventListener('mousedown', ballMouseDown, true);
    view.addEventListener('mousemove', onMouseMove, true);
    view.addEventListener('mouseup', ballMouseUp, true);
    view.addEventListener('mouseup', (event) => {
      if (event.button === 0 && ['relabel', 'erase-piece'].includes(state.tool) && state.labelsShown) {
        setTimeout(pieceAtCrosshair, 0);
      }
      if (event.button === 2) renderWindow();
    });
    // Ctrl+wheel zooms about the point under the mouse; the plain wheel is NiiVue's slice scroll.
    view.addEventListener('wheel', (event) => {
      if (!event.ctrlKey) return;
      event.preventDefault();
      event.stopPropagation();
      const hit = pointer(event);
      zoomBy(event.deltaY < 0 ? 1.25 : 0.8, hit ? nv.frac2mm(hit.frac) : undefined);
    }, { capture: true, passive: false });
    // NiiVue's double click resets the window to its own range; ours is 'w'.
    view.addEventListener('dblclick', (event) => event.stopPropagation(), true);
    window.addEventListener('resize', applyLayout);
    window.addEventListener('beforeunload', (event) => {
      if (isDirty() || state.drafts.size) event.preventDefault();
    });
  }

  async function start() {
    await nv.attachToCanvas($('#gl'));
    const response = await api('/api/session');
    if (!response.ok) {
      status(await errorText(response), 'error');
      return;
    }
    state.session = await response.json();
    $('#rater').value = state.session.rater || localStorage.getItem('sct_rootlets_review.rater') || '';
    $('#rater').addEventListener('change', () => localStorage.setItem('sct_rootlets_review.rater',
      $('#rater').value.trim()));
    $('#out-folder').textContent = state.session.out;
    $('#qc-fail').textContent = state.session.qc_fail;
    if (state.session.order === 'worst') $('#image-header').textContent = 'image (worst first)';
    wireButtons();
    renderTools();
    await load(0);
  }

  window.review = {
    state, nv, load, go, save, mark, undo, setTool, relabelAt, goToVoxel, voxelToCanvas, crosshairVoxel,
    countLabelled, isDirty, LEVEL_COLOURS,
  };
  start().catch((error) => status(`The page failed to start: ${error.message || error}`, 'error'));
})();
