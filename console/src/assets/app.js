// riskwatch duty console: plain JavaScript, no build step.
"use strict";
const T = {
  zh: { title:"riskwatch 预警值班台", offline:"离线", online:"实时", logout:"退出", login:"值班员登录", name:"用户名", password:"密码",
    login_btn:"登录", board:"实时预警", history:"历史查询", audit:"操作审计", users:"值班员", site:"站点", kind:"类型", level:"级别",
    all:"全部", red:"红色", orange:"橙色", yellow:"黄色", blue:"蓝色", state:"状态", subject:"对象", message:"内容", value:"数值",
    since:"发布时间", age:"持续", no_alerts:"当前没有未闭环的预警。", from:"从", to:"到", text:"关键字", search:"查询", time:"时间",
    change:"变化", by:"操作人", user:"用户", action:"操作", alert:"预警", detail:"说明", outcome:"结果", remote:"来源", display:"姓名",
    role:"角色", exercise_banner:"【演习】本预警来自演练，不是真实事件", note:"备注", unit:"责任单位", acknowledge:"确认", assign:"指派",
    resolve:"处置闭环", cap:"CAP 报文", timeline:"经过", unacked:"待确认", acked:"已确认", cleared:"已解除·待闭环", threshold:"阈值",
    highest:"最高级别", assignee:"责任单位", acked_by:"确认人", rule:"规则", alert_id:"预警编号", done:"已完成", counts:"未闭环 {n} 条",
    raised:"发布", escalated:"升级", de_escalated:"降级", acknowledged:"确认", assigned:"指派", resolved:"闭环", reminder:"提醒", called:"叫应",
    chain:"叫应", tier:"第 {n}/{m} 级", deadline:"限", answered:"已应答", last_tier:"最后一级",
    shelve:"搁置", unshelve:"解除搁置", shelved:"已搁置", unshelved:"解除搁置", shelved_list:"已搁置的预警", reason:"原因",
    service:"停用与维护窗口", sensor:"测点", target_id:"编号", window_minutes:"时长（分钟）", take_out:"停用", return_service:"恢复运行",
    out_of_service:"停用", return_to_service:"恢复运行",
    shelved_until:"搁置至", minutes:"搁置时长（分钟）", shelved_state:"已搁置至 {t}",
    login_action:"登录", login_failed:"登录失败", foreign_origin:"外站请求被拒", session_expired:"会话到期", logout_action:"退出", no_readings:"暂无近期读数", sent:"已发送",
    map:"一张图", fit:"全图", no_level:"无预警", basemap_note:"示意底图，非标准地图（无审图号）", map_hint:"点击站点查看其预警；点击聚合点放大。",
    division:"行政区划代码", coords:"坐标", by_sensors:"（按传感器位置平均）", show_on_board:"在实时预警中查看", no_open:"该站点当前没有未闭环的预警。",
    unlocated:"{n} 个站点没有坐标，未上图：", locate:"地图定位", open_n:"未闭环 {n} 条",
    add_user:"添加值班员", add:"添加", initial_password:"初始密码（至少 10 个字符）", manage:"管理", save:"保存", reset_password:"重置密码",
    new_password:"新密码（至少 10 个字符）", remove:"删除", role_viewer:"只读", role_officer:"值班员", role_admin:"管理员", you:"（本人）",
    confirm_remove:"确定删除值班员 {name}？其登录会话将立即结束。", user_added:"已添加 {name}", user_saved:"已保存 {name}",
    password_reset:"已重置 {name} 的密码", user_removed:"已删除 {name}", sessions_ended:"，结束会话 {n} 个",
    user_add:"添加值班员", user_update:"修改值班员", user_password:"重置密码", user_remove:"删除值班员",
    err_bad_name:"用户名不能为空、不能含空格或控制字符，且不超过 64 个字符", err_bad_password:"密码至少需要 10 个字符",
    err_duplicate_name:"已有同名值班员", err_last_admin:"这是最后一名管理员，不能删除或降级；请先把另一人设为管理员",
    err_own_account:"不能删除或降级自己的账号，请由另一名管理员操作", err_stale:"值班员名单已被他人修改，已刷新，请重新操作",
    kpi:"报警指标", kpi_hint:"留空：最近 24 小时", kpi_name:"指标", kpi_benchmark:"基准（EEMUA 191 / ISA-18.2）", kpi_meets:"达标", kpi_yes:"是", kpi_no:"否",
    kpi_rate:"每名值班员每 10 分钟预警数", kpi_bad_actors:"频发预警源（前 10）", kpi_ack:"确认用时分布", kpi_chattering:"抖动预警源（1 分钟内发布 ≥ 3 次）",
    kpi_standing:"长期未闭环预警（超过 24 小时）", kpi_raises:"发布次数", kpi_most_within:"1 分钟内最多", kpi_open_hours:"未闭环（小时）", kpi_none:"无",
    kpi_flood:"泛滥", kpi_manageable:"可控", kpi_ack_note:"已确认 {acked} 条，未确认 {unacked} 条；中位数 {median} 秒，90% 分位 {p90} 秒。",
    kpi_summary:"{from} 至 {to}，值班员 {officers} 名：预警 {alerts} 条（发布 {raised}，升级 {escalated}）；10 分钟峰值 {peak} 条；泛滥时段 {floods}/{windows}。",
    err_unknown_user:"没有这个值班员（可能已被删除）", err_bad_display_name:"姓名不能含控制字符，且不超过 128 个字符" },
  en: { title:"riskwatch duty console", offline:"offline", online:"live", logout:"Log out", login:"Officer login", name:"Name", password:"Password",
    login_btn:"Log in", board:"Live alerts", history:"History", audit:"Audit log", users:"Operators", site:"Site", kind:"Kind", level:"Level",
    all:"All", red:"Red", orange:"Orange", yellow:"Yellow", blue:"Blue", state:"State", subject:"Subject", message:"Message", value:"Value",
    since:"Raised", age:"Age", no_alerts:"No open alerts.", from:"From", to:"To", text:"Text", search:"Search", time:"Time",
    change:"Change", by:"By", user:"User", action:"Action", alert:"Alert", detail:"Detail", outcome:"Outcome", remote:"From", display:"Display name",
    role:"Role", exercise_banner:"[EXERCISE] This alert comes from a drill, not a real event", note:"Note", unit:"Unit", acknowledge:"Acknowledge", assign:"Assign",
    resolve:"Resolve", cap:"CAP message", timeline:"Timeline", unacked:"unacknowledged", acked:"acknowledged", cleared:"cleared · to close", threshold:"Threshold",
    highest:"Highest", assignee:"Assigned to", acked_by:"Acknowledged by", rule:"Rule", alert_id:"Alert id", done:"Done", counts:"{n} open",
    raised:"raised", escalated:"escalated", de_escalated:"de-escalated", cleared_change:"cleared", acknowledged:"acknowledged", assigned:"assigned", resolved:"resolved", reminder:"reminder", called:"called",
    chain:"Call-response", tier:"tier {n}/{m}", deadline:"answer by", answered:"answered", last_tier:"last tier",
    shelve:"Shelve", unshelve:"Unshelve", shelved:"shelved", unshelved:"unshelved", shelved_list:"Shelved alerts", reason:"Reason",
    service:"Out of service / maintenance windows", sensor:"Sensor", target_id:"Id", window_minutes:"For (minutes)", take_out:"Take out of service", return_service:"Return to service",
    out_of_service:"out of service", return_to_service:"return to service",
    shelved_until:"Shelved until", minutes:"Shelve for (minutes)", shelved_state:"shelved until {t}",
    login_action:"login", login_failed:"login failed", foreign_origin:"foreign origin refused", session_expired:"session expired", logout_action:"logout", no_readings:"No recent readings", sent:"sent",
    map:"Map", fit:"Fit", no_level:"no alert", basemap_note:"Indicative basemap, not an approved standard map", map_hint:"Click a site for its alerts; click a cluster to zoom in.",
    division:"Division code", coords:"Coordinates", by_sensors:" (mean of its sensors)", show_on_board:"Show on the live board", no_open:"No open alerts at this site.",
    unlocated:"{n} site(s) without coordinates, not on the map: ", locate:"Show on map", open_n:"{n} open",
    add_user:"Add an operator", add:"Add", initial_password:"Initial password (at least 10 characters)", manage:"Manage", save:"Save", reset_password:"Reset password",
    new_password:"New password (at least 10 characters)", remove:"Remove", role_viewer:"viewer", role_officer:"officer", role_admin:"admin", you:" (you)",
    confirm_remove:"Remove operator {name}? Their sessions end at once.", user_added:"{name} added", user_saved:"{name} saved",
    password_reset:"Password of {name} reset", user_removed:"{name} removed", sessions_ended:", {n} session(s) ended",
    kpi:"Alarm KPIs", kpi_hint:"empty: the last 24 hours", kpi_name:"KPI", kpi_benchmark:"Benchmark (EEMUA 191 / ISA-18.2)", kpi_meets:"Meets", kpi_yes:"yes", kpi_no:"NO",
    kpi_rate:"Alerts per officer per 10 minutes", kpi_bad_actors:"Top-10 bad actors", kpi_ack:"Time to acknowledge", kpi_chattering:"Chattering sources (raised ≥ 3 times within a minute)",
    kpi_standing:"Standing alerts (open more than 24 h)", kpi_raises:"Raises", kpi_most_within:"Most within a minute", kpi_open_hours:"Open (h)", kpi_none:"none",
    kpi_flood:"flood", kpi_manageable:"manageable", kpi_ack_note:"{acked} acknowledged, {unacked} not; median {median} s, 90th percentile {p90} s.",
    kpi_summary:"{from} to {to}, {officers} officer(s): {alerts} alerts ({raised} raised, {escalated} escalated); peak {peak} in 10 minutes; flood windows {floods} of {windows}.",
    user_add:"operator added", user_update:"operator changed", user_password:"password reset", user_remove:"operator removed" },
};
let lang = localStorage.getItem("rw-lang") || "zh";
let me = null, board = [], selected = null, source = null;
let map = null, sites = [], mapSites = [];
const $ = (s) => document.querySelector(s);
const t = (k) => (T[lang][k] ?? T.zh[k] ?? k);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&":"&amp;", "<":"&lt;", ">":"&gt;", '"':"&quot;", "'":"&#39;" }[c]));
const fmtTime = (ms) => { const d = new Date(typeof ms === "number" ? ms : Date.parse(ms)); return isNaN(d) ? "" : d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12:false }); };
// How long an alert has lasted: to now while it holds, to its last change once it cleared. A
// replayed or drilled alert whose events are long past is measured on its own clock (first to
// latest event), not against today's date.
const STALE_CLOCK_MS = 2 * 86400000;
const duration = (a) => {
  const first = Date.parse(a.first_ts), last = Date.parse(a.updated_ts || a.ts || a.first_ts);
  const end = !a.active || Date.now() - last > STALE_CLOCK_MS ? last : Date.now();
  const s = Math.max(0, (end - first) / 1000);
  const zh = lang === "zh";
  if (s < 120) return Math.round(s) + (zh ? " 秒" : " s");
  if (s < 7200) return Math.round(s / 60) + (zh ? " 分钟" : " min");
  if (s < 172800) return (s / 3600).toFixed(1).replace(/\.0$/, "") + (zh ? " 小时" : " h");
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  return zh ? `${d} 天 ${h} 小时` : `${d} d ${h} h`;
};
// A number as a person reads it: the rule's decimals when the alert says, else at most three.
const fmtNum = (v, decimals) => {
  if (typeof v !== "number" || !isFinite(v)) return String(v ?? "");
  const s = Number.isInteger(decimals) ? v.toFixed(decimals) : String(parseFloat(v.toFixed(3)));
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
};
const fmtValue = (v, decimals, unit) => `${fmtNum(v, decimals)}${unit ? " " + unit : ""}`;
// Names as the registry gives them (the alert carries them; the site list knows the English).
const siteNames = new Map();
const siteLabel = (a) => {
  const s = siteNames.get(a.site);
  if (s && lang !== "zh" && s.name) return s.name;
  return a.site_name || (s && ((lang === "zh" && s.name_zh) || s.name)) || a.site;
};
const subjectLabel = (a) => a.sensor_name || a.subject;
const changeName = (c) => t(c === "cleared" && lang === "en" ? "cleared_change" : c);

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  $("#lang").textContent = lang === "zh" ? "English" : "中文";
  document.title = t("title");
  renderBoard();
  if (map) { map.setSites(sites); map.update(board); }   // marker titles in the new language
  renderMapSites();
  if (selected) openDetail(selected);
  if (me && !$("#tab-users").hidden) loadUsers();
  renderKpi();
}

async function api(path, opts = {}) {
  const res = await fetch(path, { credentials:"same-origin", headers:{ "content-type":"application/json" }, ...opts });
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (res.status === 401 && path !== "/api/login") { showLogin(); }
  return { ok: res.ok, status: res.status, body };
}

function showLogin() {
  me = null;
  if (source) { source.close(); source = null; }
  $("#login-view").hidden = false; $("#main-view").hidden = true; $("#detail").hidden = true;
  $("#logout").hidden = true; $("#who").textContent = "";
}

async function showMain() {
  $("#login-view").hidden = true; $("#main-view").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = `${me.display_name} (${me.role})`;
  $("#audit-tab").hidden = me.role === "viewer";
  $("#users-tab").hidden = me.role !== "admin";
  document.querySelectorAll("#d-actions button").forEach((b) => { b.disabled = me.role === "viewer"; });
  await loadMap();
  await loadServiceChoices();
  await loadBoard();
  connectLive();
}

// The out-of-service form's choices: the rule ids a window can name (the engine's, from the
// rules file the console was given; the data-quality ids at least), and the registry's sites.
async function loadServiceChoices() {
  const r = await api("/api/service/rules");
  const rules = r.ok ? r.body.rules : ["dq.gross_range", "dq.spike", "dq.flat_line", "dq.rate_of_change", "dq.timing", "dq.stale"];
  $("#service-form [name=rule]").innerHTML = rules.map((id) => `<option value="${esc(id)}">${esc(id)}</option>`).join("");
  $("#service-sites").innerHTML = sites.map((s) => `<option value="${esc(s.id)}">${esc((lang === "zh" && s.name_zh) || s.name || s.id)}</option>`).join("");
  serviceTarget();
}
function serviceTarget() {
  const rule = $("#service-form [name=target]").value === "rule";
  $("#service-id").hidden = rule; $("#service-rule").hidden = !rule;
}

async function loadBoard() {
  const r = await api("/api/alerts");
  if (!r.ok) return;
  board = r.body.alerts;
  const sites = $("#f-site");
  if (sites.options.length <= 1) {
    for (const s of r.body.sites) { siteNames.set(s.id, s); const o = document.createElement("option"); o.value = s.id; o.textContent = (lang === "zh" && s.name_zh) || s.name || s.id; sites.appendChild(o); }
  }
  renderBoard();
  mapUpdate();
}

function stateLabel(a) {
  if (a.shelved_until) return `<span class="state shelved">${esc(t("shelved_state").replace("{t}", fmtTime(a.shelved_until)))}</span>`;
  if (!a.active) return `<span class="state cleared">${t("cleared")}</span>`;
  if (!a.acknowledged_by) return `<span class="state unacked">${t("unacked")}</span>${chainLabel(a)}`;
  return `<span class="state acked">${t("acked")}</span>${chainLabel(a)}`;
}

// Where an alert is in its call-response chain (叫应): the tier called last, who, and by when
// they must answer — or who answered.
function tierName(c) { return t("tier").replace("{n}", c.tier).replace("{m}", c.tiers); }
function chainLabel(a) {
  const calls = a.calls || [];
  if (!calls.length) return "";
  const c = calls[calls.length - 1];
  const tail = a.acknowledged_by ? `${t("answered")} ${esc(a.acknowledged_by)}`
    : c.deadline ? `${t("deadline")} ${fmtTime(c.deadline)}` : t("last_tier");
  return `<div class="chain" data-tier="${c.tier}">${t("chain")} ${tierName(c)} ${esc(c.who)} · ${tail}</div>`;
}
function chainSteps(state) {
  const calls = (state && state.calls) || [];
  if (!calls.length) return "—";
  const steps = calls.map((c) => `<li>${tierName(c)} <b>${esc(c.who)}</b> ${fmtTime(c.at)}${(c.notify || []).length ? ` → ${esc(c.notify.join(", "))}` : ""}${c.deadline ? ` (${t("deadline")} ${fmtTime(c.deadline)})` : ""}</li>`);
  if (state.acknowledged_by) steps.push(`<li>${t("answered")}: <b>${esc(state.acknowledged_by)}</b> ${fmtTime(state.acknowledged_ts)}</li>`);
  return `<ol class="chain-steps">${steps.join("")}</ol>`;
}

function renderBoard() {
  const kinds = $("#f-kind");
  for (const k of new Set(board.map((a) => a.kind))) {
    if (![...kinds.options].some((o) => o.value === k)) { const o = document.createElement("option"); o.value = k; o.textContent = k; kinds.appendChild(o); }
  }
  const fs = $("#f-site").value, fk = kinds.value, fl = $("#f-level").value;
  const rank = { red:3, orange:2, yellow:1, blue:0 };
  const matches = (a) => (!fs || a.site === fs) && (!fk || a.kind === fk) && (!fl || a.level === fl);
  // Shelved alerts leave the board for their own list (ISA-18.2): visible, not calling.
  const shelved = board.filter((a) => a.shelved_until && matches(a))
    .sort((a, b) => Date.parse(a.shelved_until) - Date.parse(b.shelved_until));
  $("#shelved tbody").innerHTML = shelved.map((a) => `
    <tr class="level-${a.level}" data-id="${esc(a.alert_id)}"><td><span class="chip ${a.level}">${t(a.level)}</span></td>
      <td title="${esc(a.site)}">${esc(siteLabel(a))}</td><td title="${esc(a.subject)}">${esc(subjectLabel(a))}</td>
      <td class="reason">${esc(a.shelve_reason)}</td><td>${esc(a.shelved_by)}</td><td>${fmtTime(a.shelved_until)}</td></tr>`).join("");
  $("#shelved-list").hidden = shelved.length === 0;
  // Flood suppression: a member alert grouped under an active site alert is shown under it.
  const incidents = new Map(board.filter((a) => a.category === "composite" && a.active).map((a) => [a.alert_id, a]));
  const groupOf = (a) => {
    if (a.grouped_under && incidents.has(a.grouped_under)) return a.grouped_under;
    for (const [id, c] of incidents) if ((c.grouped || []).includes(a.alert_id) && a.level && rank[a.level] <= rank[c.level]) return id;
    return null;
  };
  const order = (a, b) => (b.active - a.active) || (rank[b.level] - rank[a.level]) || (Date.parse(a.first_ts) - Date.parse(b.first_ts));
  const listed = board.filter((a) => !a.shelved_until && matches(a));
  const members = new Map();
  for (const a of listed) { const g = groupOf(a); if (g) { if (!members.has(g)) members.set(g, []); members.get(g).push(a); } }
  const rows = [];
  for (const a of listed.filter((x) => !groupOf(x)).sort(order)) {
    rows.push(a);
    for (const m of (members.get(a.alert_id) || []).sort(order)) rows.push({ ...m, _grouped: a.alert_id });
  }
  $("#board tbody").innerHTML = rows.map((a) => `
    <tr class="level-${a.level} ${a.active ? "" : "cleared"} ${a._grouped ? "grouped" : ""}" data-id="${esc(a.alert_id)}" data-level="${a.level}" data-state="${a.active ? (a.acknowledged_by ? "acknowledged" : "unacknowledged") : "cleared"}"${a._grouped ? ` data-grouped-under="${esc(a._grouped)}"` : ""}>
      <td><span class="chip ${a.level}">${t(a.level)}</span>${a.exercise ? ` <span class="exercise">${lang === "zh" ? "演习" : "DRILL"}</span>` : ""}</td>
      <td>${stateLabel(a)}</td><td title="${esc(a.site)}">${esc(siteLabel(a))}</td><td title="${esc(a.subject)}">${esc(subjectLabel(a))}</td>
      <td>${esc(lang === "zh" ? a.message_zh : a.message_en)}</td>
      <td class="num">${esc(fmtValue(a.value, a.decimals, a.unit))}</td><td>${fmtTime(a.first_ts)}</td><td>${duration(a)}</td></tr>`).join("");
  $("#board-empty").hidden = rows.length > 0;
  // Open out-of-service windows are alerts of their own (oos.window): each with its way back.
  const windows = board.filter((a) => a.rule_id === "oos.window" && a.active);
  $("#windows").innerHTML = windows.map((a) => `<li data-id="${esc(a.alert_id)}" data-subject="${esc(a.subject)}" data-site="${esc(a.site)}" data-level="${a.level}">
    <span class="chip ${a.level}">${t(a.level)}</span> ${esc(lang === "zh" ? a.message_zh : a.message_en)}
    <button type="button" class="w-return">${t("return_service")}</button></li>`).join("");
  $("#counts").textContent = t("counts").replace("{n}", rows.length);
}

function connectLive() {
  if (source) source.close();
  source = new EventSource("/api/stream");
  source.onopen = () => { const l = $("#live"); l.className = "live on"; l.dataset.t = "online"; l.textContent = t("online"); loadBoard(); };
  source.onerror = () => { const l = $("#live"); l.className = "live off"; l.dataset.t = "offline"; l.textContent = t("offline"); };
  source.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "alert" || msg.type === "state") {
      const s = msg.data.state;
      board = board.filter((a) => a.alert_id !== s.alert_id);
      if (!s.resolved) board.push(s);
      renderBoard();
      mapUpdate();
      if (selected === s.alert_id) openDetail(selected);
    } else if (msg.type === "audit") {
      if (!$("#tab-audit").hidden) loadAudit();
    } else if (msg.type === "resync") {
      loadBoard();
    }
  };
}

// --- the map (一张图): map.js draws; this keeps it in step with the board ---------------------

const siteName = (s) => (lang === "zh" ? s.name_zh || s.name : s.name || s.name_zh) || s.id;

async function loadMap() {
  if (map) return;
  const [r, g] = await Promise.all([api("/api/sites"), fetch("/basemap.geojson", { credentials:"same-origin" })]);
  if (!r.ok) return;
  sites = r.body.sites;
  map = RwMap.create($("#map"), { label: siteName, onSites: (ids) => { mapSites = ids; renderMapSites(); } });
  try { if (g.ok) map.setBasemap(await g.json()); } catch (_) { /* no outlines: markers still work */ }
  map.setSites(sites);
  const missing = sites.filter((s) => typeof s.lat !== "number");
  $("#map-unlocated").textContent = missing.length ? t("unlocated").replace("{n}", missing.length) + missing.map(siteName).join("、") : "";
}

function mapUpdate() {
  if (!map) return;
  map.update(board.filter((a) => !a.shelved_until));   // a shelved alert does not call from the map
  renderMapSites();
}

function locateSite(id) {
  showTab("map");
  if (map && map.focusSite(id)) { mapSites = [id]; renderMapSites(); }
}

// The selected site(s): names, division, coordinates and their open alerts (click → detail).
function renderMapSites() {
  const pane = $("#map-site");
  if (!pane || !mapSites.length) return;
  const rank = { red:3, orange:2, yellow:1, blue:0 };
  pane.innerHTML = mapSites.map((id) => {
    const s = sites.find((x) => x.id === id) || { id };
    const alerts = board.filter((a) => a.site === id)
      .sort((a, b) => (b.active - a.active) || (rank[b.level] - rank[a.level]) || (Date.parse(a.first_ts) - Date.parse(b.first_ts)));
    const where = typeof s.lat === "number" ? `${s.lat.toFixed(4)}, ${s.lon.toFixed(4)}${s.located === "sensors" ? t("by_sensors") : ""}` : "—";
    return `<section class="map-site-item" data-site="${esc(id)}">
      <h3>${esc((lang === "zh" && s.name_zh) || s.name || s.id)}</h3>
      <p class="facts">${esc(id)} · ${t("division")} ${esc(s.division || "—")} · ${t("coords")} ${esc(where)}</p>
      ${alerts.length ? `<ul>${alerts.map((a) => `<li data-id="${esc(a.alert_id)}" data-level="${a.level}" data-state="${a.active ? (a.acknowledged_by ? "acknowledged" : "unacknowledged") : "cleared"}"><span class="chip ${a.level}">${t(a.level)}</span> ${stateLabel(a)} ${esc(subjectLabel(a))}<br>${esc(lang === "zh" ? a.message_zh : a.message_en)}</li>`).join("")}</ul>`
        : `<p class="muted">${t("no_open")}</p>`}
      <p><button type="button" data-site="${esc(id)}">${t("show_on_board")}</button></p></section>`;
  }).join("");
}

function chart(svg, readings, threshold, level, decimals) {
  const W = 560, H = 220, L = 50, R = 10, Tp = 10, B = 30;
  if (!readings.length) { svg.innerHTML = `<text x="${W/2}" y="${H/2}" text-anchor="middle" fill="#888">${t("no_readings")}</text>`; return; }
  const xs = readings.map((r) => r[0]), ys = readings.map((r) => r[1]).concat([threshold]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1, y0 = Math.min(...ys), y1 = Math.max(...ys);
  const pad = (y1 - y0) * 0.1 || 1;
  const sx = (x) => L + (W - L - R) * (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0));
  const sy = (y) => Tp + (H - Tp - B) * (1 - (y - (y0 - pad)) / ((y1 + pad) - (y0 - pad)));
  const colour = getComputedStyle(document.documentElement).getPropertyValue("--" + level) || "#d00";
  const path = readings.map((r, i) => `${i ? "L" : "M"}${sx(r[0]).toFixed(1)},${sy(r[1]).toFixed(1)}`).join(" ");
  svg.innerHTML = `
    <line x1="${L}" y1="${sy(threshold)}" x2="${W - R}" y2="${sy(threshold)}" stroke="${colour}" stroke-dasharray="6 4"/>
    <text x="${W - R}" y="${sy(threshold) - 4}" text-anchor="end" fill="${colour}" font-size="11">${t("threshold")} ${fmtNum(threshold, decimals)}</text>
    <path d="${path}" fill="none" stroke="#14213d" stroke-width="1.5"/>
    ${readings.length <= 60 ? readings.map((r) => `<circle cx="${sx(r[0]).toFixed(1)}" cy="${sy(r[1]).toFixed(1)}" r="3" fill="#14213d"/>`).join("") : ""}
    <text x="${L - 4}" y="${sy(y1) + 4}" text-anchor="end" font-size="11">${fmtNum(y1, decimals)}</text>
    <text x="${L - 4}" y="${sy(y0) + 4}" text-anchor="end" font-size="11">${fmtNum(y0, decimals)}</text>
    <text x="${L}" y="${H - 8}" font-size="11">${fmtTime(x0)}</text>
    <text x="${W - R}" y="${H - 8}" text-anchor="end" font-size="11">${fmtTime(x1)}</text>`;
}

async function openDetail(id) {
  selected = id;
  const r = await api(`/api/alerts/${encodeURIComponent(id)}`);
  if (!r.ok) return;
  const { state, events, readings } = r.body;
  const last = events[events.length - 1] || {};
  const a = state || last;
  $("#detail").hidden = false;
  $("#d-title").innerHTML = `<span class="chip ${a.level}">${t(a.level)}</span> ${esc(siteLabel(a))} / ${esc(subjectLabel(a))}`;
  $("#d-exercise").hidden = !a.exercise;
  $("#d-locate").dataset.site = a.site;
  const facts = [
    [t("state"), state ? stateLabel(state) : t("done")],
    [t("message"), esc(lang === "zh" ? a.message_zh : a.message_en)],
    [t("value"), `${esc(fmtValue(a.value, a.decimals, a.unit))} (${t("threshold")} ${esc(fmtValue(a.threshold, a.decimals, a.unit))})`],
    [t("highest"), t(a.highest_level)], [t("since"), fmtTime(a.first_ts)],
    [t("acked_by"), esc(state && state.acknowledged_by ? `${state.acknowledged_by} ${fmtTime(state.acknowledged_ts)}` : "—")],
    [t("chain"), chainSteps(state)],
    [t("assignee"), esc((state && state.assignee) || "—")], [t("age"), duration(state || { ...a, active: false })],
    [t("site"), `${esc(siteLabel(a))} <span class="muted">${esc(a.site)}</span>`], [t("subject"), `${esc(subjectLabel(a))} <span class="muted">${esc(a.subject)}</span>`],
    [t("rule"), esc(a.rule_id)], [t("alert_id"), esc(id)],
  ];
  $("#d-facts").innerHTML = facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
  chart($("#d-chart"), readings, a.threshold, a.level, a.decimals);
  $("#d-cap").href = `/api/alerts/${encodeURIComponent(id)}/cap.xml`;
  $("#d-events").innerHTML = events.map((e) => `<li><span class="chip ${e.level}">${t(e.level)}</span> ${fmtTime(e.ts)} <b>${changeName(e.change)}</b> ${esc(lang === "zh" ? e.message_zh : e.message_en)}${e.by ? ` — ${esc(e.by)}: ${esc(e.note || "")}` : ""}${e.assignee ? ` → ${esc(e.assignee)}` : ""}</li>`).join("");
}

async function act(action) {
  const note = $("#d-note").value, unit = $("#d-unit").value;
  const out = $("#d-result");
  out.className = "muted"; out.textContent = "…";
  const body = { note }; if (action === "assign") body.unit = unit;
  if (action === "shelve") body.minutes = parseInt($("#d-minutes").value, 10) || null;
  const r = await api(`/api/alerts/${encodeURIComponent(selected)}/${action}`, { method:"POST", body: JSON.stringify(body) });
  if (r.ok) { out.className = "ok"; out.textContent = `${t(action)}: ${t("done")}`; $("#d-note").value = ""; }
  else { out.className = "error"; out.textContent = (r.body && r.body.message) || `HTTP ${r.status}`; }
  openDetail(selected);
}

async function loadHistory(ev) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("#history-form"))) if (v) params.set(k, v);
  const r = await api("/api/history?" + params);
  $("#history-error").textContent = r.ok ? "" : (r.body && r.body.message) || "";
  const rows = r.ok ? r.body.events : [];
  $("#history tbody").innerHTML = rows.map((e) => `<tr data-id="${esc(e.alert_id)}"><td>${fmtTime(e.ts)}</td><td><span class="chip ${e.level}">${t(e.level)}</span></td><td>${changeName(e.change)}</td><td title="${esc(e.site)}">${esc(siteLabel(e))}</td><td title="${esc(e.subject)}">${esc(subjectLabel(e))}</td><td>${esc(lang === "zh" ? e.message_zh : e.message_en)}</td><td>${esc(e.by || "")}</td></tr>`).join("");
}

async function loadAudit() {
  const r = await api("/api/audit");
  if (!r.ok) return;
  const name = (a) => t(a === "login" ? "login_action" : a === "logout" ? "logout_action" : a);
  $("#audit tbody").innerHTML = r.body.entries.map((e) => `<tr data-action="${esc(e.action)}"><td>${fmtTime(e.at)}</td><td>${esc(e.user)}</td><td>${esc(name(e.action))}</td><td>${esc(e.alert_id || "")}</td><td>${esc(e.detail)}</td><td class="outcome">${esc(e.outcome)}</td><td>${esc(e.remote)}</td></tr>`).join("");
}

// --- operators (admin): the users file, edited through the API ------------------------------

let usersVersion = null;
const roleOptions = (r) => ["viewer", "officer", "admin"].map((x) => `<option value="${x}"${x === r ? " selected" : ""}>${t("role_" + x)}</option>`).join("");

async function loadUsers() {
  const r = await api("/api/users");
  if (!r.ok) return;
  usersVersion = r.body.version;
  $("#users tbody").innerHTML = r.body.users.map((u) => `<tr data-name="${esc(u.name)}" class="${me && u.name === me.name ? "me" : ""}">
    <td>${esc(u.name)}${me && u.name === me.name ? esc(t("you")) : ""}</td>
    <td><input class="u-display" size="14" maxlength="128" value="${esc(u.display_name)}"></td>
    <td><select class="u-role">${roleOptions(u.role)}</select></td>
    <td><div class="buttons"><button type="button" class="u-save">${t("save")}</button>
      <input class="u-password" type="password" size="18" minlength="10" autocomplete="new-password" placeholder="${esc(t("new_password"))}">
      <button type="button" class="u-reset">${t("reset_password")}</button>
      <button type="button" class="u-remove">${t("remove")}</button></div></td></tr>`).join("");
  $("#users-note").textContent = r.body.note || "";
}

// The outcome of a change, in the operator's language when the console knows the reason.
function usersResult(r, okKey, name) {
  const out = $("#users-result");
  if (r.ok) {
    const n = r.body.sessions_ended || 0;
    out.className = "ok"; out.textContent = t(okKey).replace("{name}", name) + (n ? t("sessions_ended").replace("{n}", n) : "");
  } else {
    const code = r.body && r.body.error, msg = (r.body && r.body.message) || `HTTP ${r.status}`;
    out.className = "error"; out.textContent = (lang === "zh" && code && T.zh["err_" + code]) || msg;
  }
  if (r.status !== 401) loadUsers();
  return r.ok;
}

async function userChange(method, path, body, okKey, name) {
  const r = await api(path, { method, body: JSON.stringify({ ...body, version: usersVersion }) });
  return usersResult(r, okKey, name);
}

function showTab(name) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tabpane").forEach((p) => { p.hidden = p.id !== "tab-" + name; });
  if (name === "map" && map) map.redraw();
  if (name === "history") loadHistory();
  if (name === "audit") loadAudit();
  if (name === "kpi") loadKpi();
  if (name === "users") { $("#users-result").textContent = ""; loadUsers(); }
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await api("/api/login", { method:"POST", body: JSON.stringify({ name: $("#login-name").value, password: $("#login-password").value }) });
  if (r.ok) { me = r.body; $("#login-error").textContent = ""; $("#login-password").value = ""; showMain(); }
  else { $("#login-error").textContent = (r.body && r.body.message) || `HTTP ${r.status}`; }
});
$("#logout").addEventListener("click", async () => { await api("/api/logout", { method:"POST" }); showLogin(); });
$("#lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("rw-lang", lang); applyLang(); });
document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
["#f-site", "#f-kind", "#f-level"].forEach((s) => $(s).addEventListener("change", renderBoard));
$("#board tbody").addEventListener("click", (ev) => { const tr = ev.target.closest("tr"); if (tr) openDetail(tr.dataset.id); });
$("#history tbody").addEventListener("click", (ev) => { const tr = ev.target.closest("tr"); if (tr) openDetail(tr.dataset.id); });
$("#history-form").addEventListener("submit", loadHistory);
$("#user-add").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData($("#user-add")), body = Object.fromEntries(f);
  if (await userChange("POST", "/api/users", body, "user_added", body.name)) $("#user-add").reset();
  else $("#user-add [name=password]").value = "";
});
$("#users tbody").addEventListener("click", async (ev) => {
  const b = ev.target.closest("button"), tr = ev.target.closest("tr[data-name]");
  if (!b || !tr) return;
  const name = tr.dataset.name, path = `/api/users/${encodeURIComponent(name)}`;
  if (b.classList.contains("u-save")) {
    await userChange("PATCH", path, { display_name: tr.querySelector(".u-display").value, role: tr.querySelector(".u-role").value }, "user_saved", name);
  } else if (b.classList.contains("u-reset")) {
    const pw = tr.querySelector(".u-password");
    await userChange("POST", path + "/password", { password: pw.value }, "password_reset", name);
    pw.value = "";
  } else if (b.classList.contains("u-remove")) {
    if (confirm(t("confirm_remove").replace("{name}", name))) await userChange("DELETE", path, {}, "user_removed", name);
  }
});
$("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; selected = null; });
$("#d-ack").addEventListener("click", () => act("acknowledge"));
$("#d-assign").addEventListener("click", () => act("assign"));
$("#d-resolve").addEventListener("click", () => act("resolve"));
// A window's target kind is in its alert's kind ("site", "rule"), else it is a sensor.
async function service(action, body) {
  const out = $("#service-result");
  out.className = "muted"; out.textContent = "…";
  const r = await api(`/api/service/${action}`, { method:"POST", body: JSON.stringify(body) });
  if (r.ok) { out.className = "ok"; out.textContent = `${t(action)}: ${t("done")}`; }
  else { out.className = "error"; out.textContent = (r.body && r.body.message) || `HTTP ${r.status}`; }
  return r.ok;
}
$("#service-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = Object.fromEntries(new FormData($("#service-form")));
  const id = f.target === "rule" ? f.rule : f.id;
  const body = { target: f.target, id, note: f.note, minutes: parseInt(f.minutes, 10) || null };
  if (f.site) body.site = f.site;
  if (await service("out_of_service", body)) $("#service-form [name=note]").value = "";
});
$("#service-form [name=target]").addEventListener("change", serviceTarget);
$("#windows").addEventListener("click", async (ev) => {
  const li = ev.target.closest("li[data-id]");
  if (!li || !ev.target.classList.contains("w-return")) return;
  const a = board.find((x) => x.alert_id === li.dataset.id) || {};
  const target = a.kind === "site" || a.kind === "rule" ? a.kind : "sensor";
  const body = { target, id: li.dataset.subject, note: "" };
  if (target !== "site" && li.dataset.site !== li.dataset.subject) body.site = li.dataset.site;
  await service("return_to_service", body);
});
$("#d-shelve").addEventListener("click", () => act("shelve"));
$("#d-unshelve").addEventListener("click", () => act("unshelve"));
$("#shelved tbody").addEventListener("click", (ev) => { const tr = ev.target.closest("tr"); if (tr) openDetail(tr.dataset.id); });
$("#d-locate").addEventListener("click", () => {
  const site = $("#d-locate").dataset.site;
  if (site) { $("#detail").hidden = true; selected = null; locateSite(site); }
});
$("#map-in").addEventListener("click", () => map && map.zoomIn());
$("#map-out").addEventListener("click", () => map && map.zoomOut());
$("#map-fit").addEventListener("click", () => map && map.fit());
$("#map-site").addEventListener("click", (ev) => {
  const li = ev.target.closest("li[data-id]");
  if (li) { openDetail(li.dataset.id); return; }
  const b = ev.target.closest("button[data-site]");
  if (b) { $("#f-site").value = b.dataset.site; showTab("board"); renderBoard(); }
});
setInterval(renderBoard, 60000);

(async () => {
  applyLang();
  const r = await api("/api/me");
  if (r.ok) { me = r.body; showMain(); } else { showLogin(); }
})();
