// riskwatch duty console: the alarm KPI page (指标), from /api/kpi (docs/alarm-kpis.md).
// Loaded before app.js, whose helpers ($, t, api, esc, fmtTime) it uses when called.
"use strict";
let kpi = null;
// A figure as `riskwatch report` prints it: whole numbers as they are, others with two decimals.
const kpiFig = (v) => (v === null || v === undefined ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(2));
const kpiSource = (s) => `${esc(s.name)}${s.name !== s.subject ? ` <small>${esc(s.subject)}</small>` : ""}`;

async function loadKpi(ev) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("#kpi-form"))) if (v) params.set(k, v);
  const r = await api("/api/kpi?" + params);
  $("#kpi-error").textContent = r.ok ? "" : (r.body && r.body.message) || `HTTP ${r.status}`;
  if (!r.ok) return;
  kpi = r.body;
  renderKpi();
}

function renderKpi() {
  const k = kpi;
  if (!k) return;
  $("#kpi-summary").innerHTML = t("kpi_summary")
    .replace("{from}", `<span data-kpi="from">${fmtTime(k.from_ms)}</span>`)
    .replace("{to}", `<span data-kpi="to">${fmtTime(k.to_ms)}</span>`)
    .replace("{officers}", `<b data-kpi="officers">${k.officers}</b>`)
    .replace("{alerts}", `<b data-kpi="alerts">${k.alerts}</b>`)
    .replace("{raised}", `<span data-kpi="raised">${k.raised}</span>`)
    .replace("{escalated}", `<span data-kpi="escalated">${k.escalated}</span>`)
    .replace("{peak}", `<b data-kpi="peak">${k.peak_10min}</b>`)
    .replace("{floods}", `<span data-kpi="flood_windows">${k.flood_windows}</span>`)
    .replace("{windows}", `<span data-kpi="windows">${k.windows}</span>`);
  $("#kpi-table tbody").innerHTML = k.verdicts.map((v) => `<tr data-kpi="${esc(v.key)}">
    <td>${esc(lang === "zh" ? v.name_zh : v.name_en)}</td><td class="kpi-value">${kpiFig(v.value)}</td>
    <td>${esc(v.benchmark)}</td>
    <td class="${v.meets === false ? "kpi-no" : v.meets ? "kpi-yes" : ""}">${v.meets === null ? "–" : t(v.meets ? "kpi_yes" : "kpi_no")}</td></tr>`).join("");
  kpiRate($("#kpi-rate"), k);
  kpiBars($("#kpi-bad"), k.bad_actors.map((b) => [b.name, b.alerts]), 520);
  kpiBars($("#kpi-ack"), k.ack.histogram, 420);
  $("#kpi-ack-note").textContent = t("kpi_ack_note").replace("{acked}", k.ack.acknowledged).replace("{unacked}", k.ack.unacknowledged)
    .replace("{median}", kpiFig(k.ack.median_s)).replace("{p90}", kpiFig(k.ack.p90_s));
  $("#kpi-chatter tbody").innerHTML = k.chattering.map((c) => `<tr><td>${kpiSource(c)}</td><td>${esc(c.rule_id)}</td><td>${c.raises}</td><td>${c.most_within}</td></tr>`).join("")
    || `<tr><td colspan="4" class="muted">${t("kpi_none")}</td></tr>`;
  $("#kpi-standing tbody").innerHTML = k.standing.map((s) => `<tr data-id="${esc(s.alert_id)}"><td><span class="chip ${esc(s.level)}">${t(s.level)}</span></td><td>${kpiSource(s)}</td><td>${fmtTime(s.raised_ms)}</td><td>${kpiFig(s.open_hours)}</td></tr>`).join("")
    || `<tr><td colspan="4" class="muted">${t("kpi_none")}</td></tr>`;
}

// Alerts per officer per window as bars over the period, with the flood and "manageable" lines.
function kpiRate(svg, k) {
  const W = 900, H = 220, L = 40, R = 90, Tp = 10, B = 30;
  const per = k.series.map((w) => w.alerts / k.officers), flood = k.flood_threshold / k.officers;
  const top = Math.max(flood * 1.15, ...per, 1);
  const n = Math.max(per.length, 1), bw = (W - L - R) / n;
  const sy = (y) => Tp + (H - Tp - B) * (1 - y / top);
  const bars = per.map((v, i) => v > 0 ? `<rect class="kpi-bar${v >= flood ? " flood" : ""}" x="${(L + i * bw).toFixed(1)}" y="${sy(v).toFixed(1)}" width="${Math.max(bw - 1, 1).toFixed(1)}" height="${(sy(0) - sy(v)).toFixed(1)}" data-n="${k.series[i].alerts}"><title>${fmtTime(k.series[i].start_ms)}: ${k.series[i].alerts}</title></rect>` : "").join("");
  const line = (y, colour, label, cls) => `<line class="${cls}" x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}" stroke="${colour}" stroke-dasharray="6 4"/>
    <text x="${W - R + 4}" y="${sy(y) + 4}" fill="${colour}" font-size="11">${label}</text>`;
  svg.innerHTML = `${bars}
    ${line(flood, "var(--red)", `${t("kpi_flood")} ≥ ${kpiFig(flood)}`, "kpi-flood-line")}
    ${line(1, "var(--blue)", `${t("kpi_manageable")} ≤ 1`, "kpi-ok-line")}
    <line x1="${L}" x2="${W - R}" y1="${sy(0)}" y2="${sy(0)}" stroke="#999"/>
    <text x="${L - 4}" y="${sy(top) + 10}" text-anchor="end" font-size="11">${kpiFig(Math.round(top))}</text>
    <text x="${L - 4}" y="${sy(0) + 4}" text-anchor="end" font-size="11">0</text>
    <text x="${L}" y="${H - 8}" font-size="11">${fmtTime(k.from_ms)}</text>
    <text x="${W - R}" y="${H - 8}" text-anchor="end" font-size="11">${fmtTime(k.to_ms)}</text>`;
}

// Horizontal bars: [label, count] per row (labels are text; long ones cut, whole on hover).
function kpiBars(svg, rows, W) {
  const row = 22, L = W * 0.45, R = 40, H = Math.max(rows.length, 1) * row + 8;
  svg.setAttribute("height", H);
  const most = Math.max(...rows.map((r) => r[1]), 1);
  const cut = (s) => (s.length > 24 ? s.slice(0, 23) + "…" : s);
  svg.innerHTML = rows.length ? rows.map(([label, n], i) => {
    const y = 4 + i * row, w = ((W - L - R) * n) / most;
    return `<text x="${L - 6}" y="${y + row - 7}" text-anchor="end" font-size="12"><title>${esc(label)}</title>${esc(cut(label))}</text>
      <rect class="kpi-bar" x="${L}" y="${y + 3}" width="${w.toFixed(1)}" height="${row - 8}" data-n="${n}"/>
      <text x="${L + w + 4}" y="${y + row - 7}" font-size="12">${n}</text>`;
  }).join("") : `<text x="8" y="18" fill="#888">${t("kpi_none")}</text>`;
}

document.querySelector("#kpi-form").addEventListener("submit", (ev) => loadKpi(ev));
document.querySelector("#kpi-standing tbody").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-id]");
  if (tr) openDetail(tr.dataset.id);
});
