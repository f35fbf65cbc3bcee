// sct_rootlets_review: the page. NiiVue (vendored, global `niivue`) shows the image in three planes and 3D; the
// rootlets are its drawing layer, so NiiVue's pen paints and erases them; relabelling a connected piece and undo
// work on the same layer. A save uploads the drawing as NIfTI with the version of the correction this tab loaded,
// so that a save from a stale tab is refused by the server.
'use strict';

(() => {
  const token = document.querySelector('meta[name="review-token"]').content;
  history.replaceState(null, '', '/'); // the token leaves the address bar (the cookie and this page keep it)
  const $ = (selector) => document.querySelector(selector);

  const LAYOUTS = [niivue.SLICE_TYPE.MULTIPLANAR, niivue.SLICE_TYPE.AXIAL, niivue.SLICE_TYPE.SAGITTAL,
    niivue.SLICE_TYPE.RENDER];
  const state = {
    session: null, index: -1, loadedIndex: -1, loading: false, version: 'none', source: '',
    tool: 'navigate', level: 2, depth: 0, dirty: false, discardArmed: false, labelsShown: true, layout: 0,
    saving: false, lastSave: null,
  };

  const nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false, dragAndDropEnabled: false,
    multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS, multiplanarLayout: niivue.MULTIPLANAR_TYPE.GRID, maxDrawUndoBitmaps: 64, penSize: 1,
    viewModeHotKey: 'None', clipPlaneHotKey: 'None', cycleClipPlaneHotKey: 'None', loadingText: '',
    logLevel: 'warn', isOrientCube: false, crosshairColor: [0.9, 0.1, 0.1, 0.6], crosshairWidth: 0.2,
  });

  // --- small helpers ---------------------------------------------------------------------------------------

  function status(message, kind = 'info') {
    const box = $('#status');
    box.textContent = message;
    box.dataset.kind = kind;
  }

  async function api(path, options = {}) {
    const headers = { 'X-Review-Token': token, ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers, credentials: 'same-origin' });
    return response;
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

  /** NiiVue label colormap of the drawing: 0 transparent, each level in SCT's colour. */
  function levelColormap(levels) {
    const cmap = { R: [0, 128], G: [0, 128], B: [0, 128], A: [0, 255], I: [0, 1], labels: ['', 'lvl1'] };
    for (const level of levels) {
      const [r, g, b] = hexToRgb(level.colour);
      cmap.R.push(r); cmap.G.push(g); cmap.B.push(b); cmap.A.push(255); cmap.I.push(level.value);
      cmap.labels.push(level.name);
    }
    return cmap;
  }

  // --- the list ---------------------------------------------------------------------------------------------

  function renderList() {
    const body = $('#items tbody');
    body.replaceChildren();
    state.session.items.forEach((item, index) => {
      const row = document.createElement('tr');
      row.dataset.index = index;
      if (index === state.index) row.classList.add('selected');
      const cells = [String(index + 1), item.key, item.mark || '', item.corrected ? '✓' : ''];
      cells.forEach((text, column) => {
        const cell = document.createElement('td');
        cell.textContent = text;
        if (column === 2 && item.mark) cell.className = item.mark;
        row.appendChild(cell);
      });
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
  }

  function renderTools() {
    for (const button of document.querySelectorAll('[data-tool]')) {
      button.classList.toggle('active', button.dataset.tool === state.tool);
    }
    for (const button of document.querySelectorAll('button.level')) {
      button.classList.toggle('active', Number(button.dataset.level) === state.level && state.tool !== 'erase');
    }
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
          opacity: 0.25, cal_min: 0.5, cal_max: 1 });
      }
      await nv.loadVolumes(volumes);
      const response = await api(item.labels_url);
      if (!response.ok) throw new Error(await errorText(response));
      state.version = response.headers.get('X-Review-Version');
      state.source = response.headers.get('X-Review-Source');
      const labels = await niivue.NVImage.loadFromUrl({ url: await response.arrayBuffer(), name: 'labels.nii.gz' });
      if (!nv.loadDrawing(labels)) throw new Error('the labels are not on the image\'s grid');
      nv.setDrawColormap(levelColormap(state.session.levels));
      nv.setDrawOpacity(state.labelsShown ? 0.85 : 0);
      state.depth = 0;
      state.dirty = false;
      state.discardArmed = false;
      state.loadedIndex = index;
      centreOnLabels();
      setTool(state.tool);
      renderItem();
      status(`${item.key}: ${state.source === 'correction' ? 'your saved correction' : 'the prediction'} `
        + `(${countLabelled()} labelled voxels).`);
    } catch (error) {
      status(`Cannot load ${item.key}: ${error.message || error}`, 'error');
    } finally {
      state.loading = false;
    }
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

  async function go(index) {
    if (!state.session || index < 0 || index >= state.session.items.length || state.loading) return;
    if (state.dirty && !state.discardArmed) {
      state.discardArmed = true;
      status('Unsaved edits: save with s, or ask again to leave this image without saving.', 'error');
      return;
    }
    await load(index);
  }

  // --- tools ------------------------------------------------------------------------------------------------

  function setTool(tool, level) {
    if (level !== undefined) state.level = level;
    state.tool = tool;
    if (tool === 'paint') nv.setPenValue(state.level, false);
    if (tool === 'erase') nv.setPenValue(0, false);
    nv.setDrawingEnabled(tool === 'paint' || tool === 'erase');
    renderTools();
    const names = { navigate: 'navigate: click to move the cross-hair', erase: 'erase: drag on a slice',
      paint: `paint level ${levelName(state.level)}: drag on a slice`,
      relabel: `relabel: click a rootlet to make its connected piece ${levelName(state.level)}` };
    if (!state.loading && state.loadedIndex >= 0) status(`Tool: ${names[tool]}.`);
  }

  function levelName(value) {
    const level = state.session.levels.find((l) => l.value === value);
    return level ? level.name : String(value);
  }

  function edited() {
    state.depth = Math.min(state.depth + 1, nv.opts.maxDrawUndoBitmaps - 1);
    state.dirty = true;
    state.discardArmed = false;
  }

  nv.onDrawingChanged = (action) => { if (action === 'draw') edited(); };

  function undo() {
    if (state.depth < 1) {
      status('Nothing to undo.');
      return;
    }
    nv.drawUndo();
    state.depth -= 1;
    state.dirty = true;
    status('Undone.');
  }

  /** Relabel the 26-connected piece of equal label holding RAS voxel (x, y, z); returns the voxels changed. */
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

  function relabelAtCrosshair() {
    const [x, y, z] = crosshairVoxel();
    const changed = relabelAt(x, y, z);
    status(changed ? `Relabelled ${changed} voxels to ${levelName(state.level)}.`
      : 'No rootlet of another level under the cross-hair: click on one.');
    return changed;
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
  function voxelToCanvas(i, j, k, sliceType = niivue.SLICE_TYPE.AXIAL) {
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
      const nifti = await nv.saveImage({ filename: '', isSaveDrawing: true });
      const body = await gzip(nifti);
      const query = `base=${encodeURIComponent(state.version)}&rater=${encodeURIComponent(rater)}`;
      const response = await api(`/api/items/${state.index}/save?${query}`, {
        method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body,
      });
      if (!response.ok) {
        const message = await errorText(response);
        state.lastSave = { ok: false, status: response.status, message };
        status(message, 'error');
        return false;
      }
      const result = await response.json();
      state.version = result.version;
      state.source = 'correction';
      state.dirty = false;
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

  function toggleLabels() {
    state.labelsShown = !state.labelsShown;
    nv.setDrawOpacity(state.labelsShown ? 0.85 : 0);
  }

  function cycleLayout() {
    state.layout = (state.layout + 1) % LAYOUTS.length;
    nv.setSliceType(LAYOUTS[state.layout]);
  }

  // --- keyboard and buttons ---------------------------------------------------------------------------------

  function onKey(event) {
    if (event.target instanceof HTMLInputElement) {
      if (event.key === 'Escape' || event.key === 'Enter') event.target.blur();
      return;
    }
    const key = event.key;
    const ctrl = event.ctrlKey || event.metaKey;
    let handled = true;
    if (ctrl && (key === 'z' || key === 'Z')) undo();
    else if (ctrl && (key === 's' || key === 'S')) save();
    else if (ctrl || event.altKey) handled = false;
    else if (/^[2-9]$/.test(key)) setTool('paint', Number(key));
    else if (key === 'e' || key === '0') setTool('erase');
    else if (key === 'r') setTool('relabel');
    else if (key === 'Escape') setTool('navigate');
    else if (key === 'u') undo();
    else if (key === 's') save();
    else if (key === 'p') mark('pass');
    else if (key === 'f') mark('fail');
    else if (key === 'a') mark('artifact');
    else if (key === 'j' || key === 'n' || key === 'PageDown') go(state.index + 1);
    else if (key === 'k' || key === 'b' || key === 'PageUp') go(state.index - 1);
    else if (key === ' ') toggleLabels();
    else if (key === 'v') cycleLayout();
    else handled = false;
    if (handled) event.preventDefault();
  }

  function wireButtons() {
    for (const level of state.session.levels) {
      const button = document.createElement('button');
      button.className = 'level';
      button.dataset.level = level.value;
      button.textContent = level.name;
      button.title = `paint ${level.name} (key ${level.value})`;
      button.style.background = level.colour;
      button.addEventListener('click', () => setTool('paint', level.value));
      $('#levels').appendChild(button);
    }
    for (const button of document.querySelectorAll('[data-tool]')) {
      button.addEventListener('click', () => setTool(button.dataset.tool));
    }
    for (const button of document.querySelectorAll('[data-mark]')) {
      button.addEventListener('click', () => mark(button.dataset.mark));
    }
    $('#undo').addEventListener('click', undo);
    $('#save').addEventListener('click', save);
    $('#prev').addEventListener('click', () => go(state.index - 1));
    $('#next').addEventListener('click', () => go(state.index + 1));
    // Buttons must not keep the focus: the keys then reach the page, not the last button clicked.
    for (const button of document.querySelectorAll('button')) button.addEventListener('mouseup', () => button.blur());
    document.addEventListener('keydown', onKey);
    $('#gl').addEventListener('mouseup', () => {
      if (state.tool === 'relabel') setTimeout(relabelAtCrosshair, 0);
    });
    window.addEventListener('beforeunload', (event) => {
      if (state.dirty) event.preventDefault();
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
    wireButtons();
    renderTools();
    await load(0);
  }

  window.review = {
    state, nv, load, go, save, mark, undo, setTool, relabelAt, relabelAtCrosshair, goToVoxel, voxelToCanvas,
    crosshairVoxel, countLabelled,
  };
  start().catch((error) => status(`The page failed to start: ${error.message || error}`, 'error'));
})();
