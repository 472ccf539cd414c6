// riskwatch console: the map (一张图). Draws the basemap (GeoJSON outlines, Web Mercator) on a
// canvas and the sites as DOM markers coloured by their highest active level; nearby markers
// are merged on a screen grid into clusters showing the worst level and a count, so the number
// of elements stays bounded by the screen size however many sites there are. Pan by dragging,
// zoom with the wheel or the buttons. No tiles, no network: everything comes from the console.
"use strict";

const RwMap = (() => {
  const RANK = { blue: 1, yellow: 2, orange: 3, red: 4 };
  const LEVELS = ["", "blue", "yellow", "orange", "red"];
  const CELL = 44;          // px: markers closer than this share a cluster
  const MAX_SCALE = 4000;   // px per projected unit (~ street level is far beyond; this is enough)
  const rad = Math.PI / 180;
  const project = (lon, lat) => [lon, Math.log(Math.tan(Math.PI / 4 + Math.max(-85, Math.min(85, lat)) * rad / 2)) / rad];

  function create(root, opts) {
    const canvas = root.querySelector("canvas");
    const layer = root.querySelector(".map-markers");
    const ctx = canvas.getContext("2d");
    let shapes = [];            // { path: Path2D (projected units, y down), label, lx, ly, area }
    let extent = null;          // [x0, y0, x1, y1] of the basemap and the sites, projected, y down
    let sites = [];             // { id, name, x, y, level, unacked, open }
    let view = null;            // { cx, cy, k }: centre (projected, y down) and px per unit
    let selected = null, dirty = false, pool = [];
    let W = 0, H = 0, minK = 1;   // zooming out stops at a third of the fitted scale

    function grow(e, x, y) { e[0] = Math.min(e[0], x); e[1] = Math.min(e[1], y); e[2] = Math.max(e[2], x); e[3] = Math.max(e[3], y); }

    function setBasemap(geojson) {
      shapes = [];
      const e = [Infinity, Infinity, -Infinity, -Infinity];
      for (const f of (geojson && geojson.features) || []) {
        const g = f && f.geometry;
        if (!g) continue;
        const polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
        const path = new Path2D();
        let best = null;
        for (const poly of polys) {
          for (const ring of poly || []) {
            const b = [Infinity, Infinity, -Infinity, -Infinity];
            ring.forEach((pt, i) => {
              const [x, y0] = project(pt[0], pt[1]), y = -y0;
              if (i) path.lineTo(x, y); else path.moveTo(x, y);
              grow(b, x, y); grow(e, x, y);
            });
            path.closePath();
            const area = (b[2] - b[0]) * (b[3] - b[1]);
            if (!best || area > best.area) best = { area, lx: (b[0] + b[2]) / 2, ly: (b[1] + b[3]) / 2 };
          }
        }
        const p = f.properties || {};
        if (best) shapes.push({ path, label: p.name_zh || p.name || "", ...best });
      }
      if (e[0] < Infinity) extent = e;
      schedule();
    }

    function setSites(list) {
      sites = list.filter((s) => typeof s.lat === "number" && typeof s.lon === "number").map((s) => {
        const [x, y] = project(s.lon, s.lat);
        return { id: s.id, name: opts.label(s), x, y: -y, level: 0, unacked: false, open: 0 };
      });
      schedule();
    }

    // The board's alerts: a site's colour is its highest *active* level; `unacked` if an active
    // alert there is unacknowledged; `open` counts everything not yet resolved.
    function update(board) {
      const by = new Map();
      for (const a of board) {
        const s = by.get(a.site) || { level: 0, unacked: false, open: 0 };
        s.open += 1;
        if (a.active) {
          s.level = Math.max(s.level, RANK[a.level] || 0);
          if (!a.acknowledged_by) s.unacked = true;
        }
        by.set(a.site, s);
      }
      for (const s of sites) Object.assign(s, by.get(s.id) || { level: 0, unacked: false, open: 0 });
      schedule();
    }

    function fit() {
      resize();
      let e = extent ? extent.slice() : [Infinity, Infinity, -Infinity, -Infinity];
      for (const s of sites) grow(e, s.x, s.y);
      if (e[0] === Infinity) e = [73, -54, 135, -18];
      const k = Math.min(W / Math.max(1e-6, e[2] - e[0]), H / Math.max(1e-6, e[3] - e[1])) * 0.95;
      view = { cx: (e[0] + e[2]) / 2, cy: (e[1] + e[3]) / 2, k: Math.min(k, MAX_SCALE) };
      minK = Math.min(view.k / 3, MAX_SCALE);
      schedule();
    }

    function resize() {
      const r = root.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
      if (r.width === W && r.height === H) return;
      W = r.width; H = r.height;
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
      canvas.style.width = W + "px"; canvas.style.height = H + "px";
    }

    function schedule() {
      if (dirty) return;
      dirty = true;
      requestAnimationFrame(draw);
    }

    const toScreen = (x, y) => [(x - view.cx) * view.k + W / 2, (y - view.cy) * view.k + H / 2];

    function draw() {
      dirty = false;
      if (root.offsetParent === null) return;   // hidden: drawn when shown
      resize();
      if (!view) { fit(); return; }
      const dpr = window.devicePixelRatio || 1;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#dfe9f3"; ctx.fillRect(0, 0, W, H);
      ctx.setTransform(dpr * view.k, 0, 0, dpr * view.k, dpr * (W / 2 - view.cx * view.k), dpr * (H / 2 - view.cy * view.k));
      ctx.fillStyle = "#fbfaf6"; ctx.strokeStyle = "#9aa3ad"; ctx.lineWidth = 1 / view.k; ctx.lineJoin = "round";
      for (const s of shapes) { ctx.fill(s.path, "evenodd"); ctx.stroke(s.path); }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#8a929b"; ctx.font = "12px sans-serif"; ctx.textAlign = "center";
      for (const s of shapes) {
        if (!s.label || Math.sqrt(s.area) * view.k < 70) continue;
        const [x, y] = toScreen(s.lx, s.ly);
        ctx.fillText(s.label, x, y);
      }
      drawMarkers();
    }

    // Clustering in screen space: a site joins the first cluster whose anchor (its first site)
    // is within CELL px, else starts one; a grid of CELL-sized buckets finds the candidates, so
    // a frame is O(visible sites) and there is at most about one marker per CELL x CELL.
    function drawMarkers() {
      const grid = new Map(), clusters = [];
      for (const s of sites) {
        const [x, y] = toScreen(s.x, s.y);
        if (x < -CELL || y < -CELL || x > W + CELL || y > H + CELL) continue;
        const gx = Math.floor(x / CELL), gy = Math.floor(y / CELL);
        let c = null, best = CELL * CELL;
        for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) {
          for (const k of grid.get((gx + dx) + "," + (gy + dy)) || []) {
            const d = (k.ax - x) ** 2 + (k.ay - y) ** 2;
            if (d < best) { best = d; c = k; }
          }
        }
        if (!c) {
          c = { ax: x, ay: y, n: 0, sx: 0, sy: 0, level: 0, unacked: false, open: 0, sites: [] };
          clusters.push(c);
          const key = gx + "," + gy;
          (grid.get(key) || grid.set(key, []).get(key)).push(c);
        }
        c.n += 1; c.sx += x; c.sy += y; c.open += s.open; c.sites.push(s);
        c.level = Math.max(c.level, s.level); c.unacked = c.unacked || s.unacked;
      }
      let i = 0;
      for (const c of clusters) {
        const el = pool[i] || layer.appendChild(document.createElement("button"));
        pool[i++] = el;
        const single = c.n === 1 ? c.sites[0] : null;
        el.type = "button";
        el.hidden = false;
        el.className = `map-marker ${single ? "site" : "cluster"} lv-${LEVELS[c.level] || "none"}${c.unacked ? " unacked" : ""}${single && single.id === selected ? " selected" : ""}`;
        el.style.transform = `translate(${(c.sx / c.n).toFixed(1)}px, ${(c.sy / c.n).toFixed(1)}px)`;
        el.dataset.level = LEVELS[c.level] || "none";
        el.dataset.unacked = c.unacked;
        el.dataset.count = c.n;
        if (single) { el.dataset.site = single.id; el.title = single.name; el.textContent = ""; }
        else { delete el.dataset.site; el.title = c.sites.slice(0, 8).map((s) => s.name).join("\n") + (c.n > 8 ? "\n…" : ""); el.textContent = c.n; }
        el._cluster = c;
      }
      for (; i < pool.length; i++) { pool[i].hidden = true; pool[i]._cluster = null; }
    }

    function zoomAt(factor, px, py) {
      if (!view) return;
      const k = Math.max(minK, Math.min(MAX_SCALE, view.k * factor));
      const [x, y] = [(px - W / 2) / view.k + view.cx, (py - H / 2) / view.k + view.cy];
      view = { k, cx: x - (px - W / 2) / k, cy: y - (py - H / 2) / k };
      schedule();
    }

    function focusSite(id) {
      const s = sites.find((s) => s.id === id);
      selected = id;
      if (!s) { schedule(); return false; }
      if (!view) fit();
      view = { cx: s.x, cy: s.y, k: Math.max(view.k, 60) };
      schedule();
      return true;
    }

    // Pan (drag) and zoom (wheel); a click that did not move is a marker click.
    let drag = null;
    root.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      drag = { x: ev.clientX, y: ev.clientY, cx: view && view.cx, cy: view && view.cy, moved: false };
    });
    window.addEventListener("pointermove", (ev) => {
      if (!drag || !view) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      if (!drag.moved) { drag.moved = true; root.setPointerCapture && root.setPointerCapture(ev.pointerId); }
      view = { ...view, cx: drag.cx - dx / view.k, cy: drag.cy - dy / view.k };
      schedule();
    });
    window.addEventListener("pointerup", () => { setTimeout(() => { drag = null; }, 0); });
    root.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = root.getBoundingClientRect();
      zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    layer.addEventListener("click", (ev) => {
      const el = ev.target.closest(".map-marker");
      if (!el || !el._cluster || (drag && drag.moved)) return;
      const c = el._cluster;
      if (c.n === 1) { selected = c.sites[0].id; schedule(); opts.onSites([c.sites[0].id]); return; }
      if (view.k * 2 <= MAX_SCALE) zoomAt(2.5, c.sx / c.n, c.sy / c.n);
      else opts.onSites(c.sites.map((s) => s.id));   // same place at the deepest zoom: list them
    });
    new ResizeObserver(() => schedule()).observe(root);

    return {
      setBasemap, setSites, update, fit, focusSite, redraw: schedule,
      zoomIn: () => zoomAt(2, W / 2, H / 2), zoomOut: () => zoomAt(0.5, W / 2, H / 2),
      select: (id) => { selected = id; schedule(); },
      located: () => sites.length,
    };
  }

  return { create };
})();
