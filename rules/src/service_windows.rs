//! The engine's side of out-of-service windows (see [`crate::out_of_service`]): opening and
//! closing them by command, the data-quality note of a covered sensor, overruns.

use crate::engine::{clear_stale, quality_text, Engine, DQ_RULE_IDS, STALE_RULE_ID};
use crate::lifecycle::{CommandError, LevelChange};
use crate::out_of_service::{
    window_end, ServiceAction, ServiceCommand, ServiceWindow, Target, NOTE_RULE_ID, WINDOW_RULE_ID,
};
use crate::quality::QcTest;
use riskwatch_core::{AlertCategory, AlertEvent, Level, SensorId, SensorKind, SiteId, Timestamp};
use std::sync::Arc;

impl Engine {
    /// Applies a window command at processing time `now`: the window alert's event, and on
    /// closing the events that bring covered alerts in line, go to `out`.
    pub fn service_command(
        &mut self,
        cmd: &ServiceCommand,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), CommandError> {
        if cmd.by.trim().is_empty() {
            return Err(CommandError::MissingOperator);
        }
        let target = Target::of(cmd)?;
        let (described_zh, described_en) = target.describe();
        let before = out.len();
        match cmd.action {
            ServiceAction::OutOfService => {
                if self.oos.find(&target).is_some() {
                    return Err(CommandError::AlreadyOutOfService(described_en.clone()));
                }
                let (kind, site) =
                    self.target_facts(&target).ok_or_else(|| CommandError::UnknownTarget(described_en.clone()))?;
                let reason = cmd.note.trim();
                if reason.is_empty() {
                    return Err(CommandError::MissingReason);
                }
                let until = window_end(cmd, now)?;
                let (subject, _) = target.subject();
                let mut alert = None;
                let mut ev =
                    self.book.apply_change(&mut alert, window_change(&subject, &site, &kind, None, Level::Blue, now));
                let end = until.to_cst_minute();
                ev.message_zh = format!("【停用】{described_zh} 停用至 {end}（北京时间），{}：{reason}", cmd.by);
                ev.message_en = format!("Out of service: {described_en} until {end} (UTC+8), by {}: {reason}", cmd.by);
                finish(&mut ev, cmd);
                out.push(ev);
                let sites = self.covered_sites(&target);
                let w = ServiceWindow {
                    target,
                    by: cmd.by.clone(),
                    reason: reason.into(),
                    since: now,
                    until,
                    alert,
                    overrun: false,
                };
                let at = self.oos.windows.partition_point(|x| x.target < w.target);
                self.oos.windows.insert(at, w);
                // Composites stop counting what the window covers.
                self.recheck_composites(sites, now, out);
            }
            ServiceAction::ReturnToService => {
                let i = self.oos.find(&target).ok_or_else(|| CommandError::NotOutOfService(described_en.clone()))?;
                let mut w = self.oos.windows.remove(i);
                let (kind, site) = self.target_facts(&target).unwrap_or_else(|| {
                    (SensorKind::Custom(Arc::from("service")), target.subject().1.unwrap_or_else(|| SiteId::new("")))
                });
                let from = if w.overrun { Level::Yellow } else { Level::Blue };
                let (subject, _) = target.subject();
                let mut change = window_change(&subject, &site, &kind, Some(from), from, now);
                change.to = None;
                let mut ev = self.book.apply_change(&mut w.alert, change);
                let note = cmd.note.trim();
                let (nz, ne) = if note.is_empty() {
                    (String::new(), String::new())
                } else {
                    (format!("：{note}"), format!(": {note}"))
                };
                ev.message_zh = format!("【恢复运行】{described_zh} 恢复运行，{}{nz}", cmd.by);
                ev.message_en = format!("Back in service: {described_en}, by {}{ne}", cmd.by);
                finish(&mut ev, cmd);
                out.push(ev);
                self.reconcile(&target, now, out);
            }
        }
        // Opening a window can clear a site alert (its members stop counting) and closing one
        // can raise alerts: call-response chains start and stop on those as on any other.
        if self.chains.active() {
            self.chains.observe(&mut self.book, &self.names, before, now, out);
        }
        self.stats.events += (out.len() - before) as u64;
        self.label(&mut out[before..]);
        Ok(())
    }

    /// The kind and site of a target's window alert, if this engine has the target.
    fn target_facts(&self, target: &Target) -> Option<(SensorKind, SiteId)> {
        match target {
            Target::Sensor { id } => self.sensors.get(id).map(|s| (s.kind.clone(), s.site.clone())),
            Target::Site { id } => self
                .sensors
                .values()
                .any(|s| &s.site == id)
                .then(|| (SensorKind::Custom(Arc::from("site")), id.clone())),
            Target::Rule { id, site } => {
                // `dq.stale`: stale detection, where a sensor has it; `dq.spike` and the other
                // data-quality tests: that test, where a sensor's quality table configures it.
                let at = |s: &SiteId| site.as_ref().is_none_or(|site| s == site);
                let known = if id == STALE_RULE_ID {
                    self.stale_watch.iter().any(|s| self.sensors.get(s).is_some_and(|x| at(&x.site)))
                } else if let Some(test) = dq_test(id) {
                    self.sensors.values().any(|x| at(&x.site) && x.quality.as_deref().is_some_and(|q| q.spec.has(test)))
                } else {
                    self.rule_ids.iter().any(|r| &**r == id.as_str())
                        && site.as_ref().is_none_or(|s| self.sensors.values().any(|x| &x.site == s))
                };
                known.then(|| {
                    (SensorKind::Custom(Arc::from("rule")), target.subject().1.unwrap_or_else(|| SiteId::new(id)))
                })
            }
        }
    }

    /// The sites with a binding `target` covers.
    fn covered_sites(&self, target: &Target) -> Vec<SiteId> {
        let mut sites: Vec<SiteId> = Vec::new();
        for (id, slot) in self.sensors.iter() {
            let covered = slot.bindings.iter().any(|b| target.covers(id, &slot.site, &self.rules[b.rule].spec.id));
            if covered && !sites.contains(&slot.site) {
                sites.push(slot.site.clone());
            }
        }
        sites
    }

    /// Composites of `sites` evaluate again (their members' counted levels changed).
    fn recheck_composites(&mut self, sites: Vec<SiteId>, now: Timestamp, out: &mut Vec<AlertEvent>) {
        for site in sites {
            if let Some(indices) = self.site_composites.get(&site) {
                for i in indices.clone() {
                    self.composite_bindings[i].band_value = None;
                }
            }
            let from = out.len();
            self.evaluate_composites(&site, now, now, out);
            self.group_members(&site, from, out);
        }
    }

    /// After `target`'s window closed: every binding it covered and no other window covers
    /// gets its alert in line with its ladder; notes of sensors with nothing withheld clear;
    /// composites of the sites concerned look again.
    fn reconcile(&mut self, target: &Target, now: Timestamp, out: &mut Vec<AlertEvent>) {
        let mut sites: Vec<SiteId> = Vec::new();
        for position in 0..self.sensors.len() {
            let (id, slot) = self.sensors.entry(position);
            let touched: Vec<usize> = (0..slot.bindings.len())
                .filter(|bi| {
                    let rule = &self.rules[slot.bindings[*bi].rule].spec.id;
                    target.covers(id, &slot.site, rule) && !self.oos.covers(id, &slot.site, rule)
                })
                .collect();
            if touched.is_empty() {
                continue;
            }
            let id = id.clone();
            self.keep_for_save(position);
            self.changes.mark(position);
            for bi in touched {
                self.bring_in_line(position, &id, bi, now, out);
            }
            let slot = self.sensors.at(position);
            if !sites.contains(&slot.site) {
                sites.push(slot.site.clone());
            }
            self.update_note(&id, now, None, out);
        }
        self.recheck_composites(sites, now, out);
        self.stale_back_in_service(target, now, out);
        self.quality_back_in_service(target, now, out);
    }

    /// After `target`'s window closed: every data-quality test it covered (of a sensor no
    /// other window covers for that test) gets its alert in line with the test's ladder, which
    /// kept stepping while the alert was left as it was: raised (at `now`) if the test still
    /// holds its level, cleared if it passed `clear_after` readings meanwhile.
    fn quality_back_in_service(&mut self, target: &Target, now: Timestamp, out: &mut Vec<AlertEvent>) {
        for position in 0..self.sensors.len() {
            let (id, slot) = self.sensors.entry(position);
            let Some(q) = slot.quality.as_deref() else { continue };
            let touched: Vec<QcTest> = QcTest::ALL
                .into_iter()
                .filter(|t| q.spec.has(*t))
                .filter(|t| {
                    let rule = DQ_RULE_IDS[t.index()];
                    target.covers(id, &slot.site, rule) && !self.oos.covers(id, &slot.site, rule)
                })
                .collect();
            if touched.is_empty() {
                continue;
            }
            let id = id.clone();
            self.keep_for_save(position);
            self.changes.mark(position);
            let slot = self.sensors.at_mut(position).1;
            let Some(q) = slot.quality.as_deref_mut() else { continue };
            for test in touched {
                let i = test.index();
                let withheld = q.withheld[i].take();
                let current =
                    q.alerts[i].as_deref().and_then(|a| self.book.get(a)).filter(|r| r.active).map(|r| r.level);
                let wanted = q.tests.level(i);
                if current == wanted {
                    continue;
                }
                // Raised: the last value the test flagged; cleared: the last good reading's.
                let value = if wanted.is_some() { withheld } else { q.state.last_value() }.unwrap_or(0.0);
                let mut ev = self.book.apply_change(
                    &mut q.alerts[i],
                    LevelChange {
                        rule_id: &Arc::from(DQ_RULE_IDS[i]),
                        subject: &id,
                        site: &slot.site,
                        kind: &slot.kind,
                        category: AlertCategory::DataQuality,
                        from: current,
                        to: wanted,
                        ts: now,
                        now,
                        value,
                        threshold: 0.0,
                        unit: Arc::clone(&slot.unit),
                        remind_ms: [None; 4],
                        decimals: Some(2),
                    },
                );
                quality_text(&self.names, &q.spec, test, value, (&id, &slot.site), true, &mut ev);
                out.push(ev);
            }
        }
    }

    /// After `target`'s window closed: every sensor whose stale check it covered and no other
    /// window covers counts its silence afresh from `now`; a stale alert open since before the
    /// window (left as it was while out of service) clears, and is raised again only if the
    /// sensor stays silent for its whole limit from now.
    fn stale_back_in_service(&mut self, target: &Target, now: Timestamp, out: &mut Vec<AlertEvent>) {
        let mut any = false;
        for k in 0..self.stale_watch.len() {
            let Some(position) = self.sensors.position(self.stale_watch[k].as_str()) else { continue };
            let (id, slot) = self.sensors.entry(position);
            if !target.covers(id, &slot.site, STALE_RULE_ID) || self.oos.covers(id, &slot.site, STALE_RULE_ID) {
                continue;
            }
            let id = id.clone();
            self.keep_for_save(position);
            self.changes.mark(position);
            any = true;
            let slot = self.sensors.at_mut(position).1;
            let Some(q) = slot.quality.as_deref_mut() else { continue };
            q.returned_at = Some(now);
            if q.stale.level.is_some() {
                clear_stale(&mut self.book, &self.names, q, (&id, &slot.site, &slot.kind), (now, now), true, out);
            }
        }
        if any {
            // The sweep must look at these sensors again to know when one can turn stale.
            self.quiet_until = None;
        }
    }

    /// Moves binding `bi` of the sensor at `position` from its alert's level to its ladder's.
    fn bring_in_line(
        &mut self,
        position: usize,
        sensor: &SensorId,
        bi: usize,
        now: Timestamp,
        out: &mut Vec<AlertEvent>,
    ) {
        let slot = self.sensors.at_mut(position).1;
        let b = &mut slot.bindings[bi];
        let current = b.alert.as_deref().and_then(|id| self.book.get(id)).filter(|r| r.active).map(|r| r.level);
        let wanted = b.state.level;
        if current == wanted {
            return;
        }
        let rule = &self.rules[b.rule];
        let decider = if wanted > current { wanted } else { current };
        let threshold = decider.and_then(|l| b.thresholds.level(l.index()).first().copied()).unwrap_or(0.0);
        let mut ev = self.book.apply_change(
            &mut b.alert,
            LevelChange {
                rule_id: &self.rule_ids[b.rule],
                subject: sensor,
                site: &slot.site,
                kind: &slot.kind,
                category: AlertCategory::Hazard,
                from: current,
                to: wanted,
                ts: now,
                now,
                value: b.last_value.unwrap_or(0.0),
                threshold,
                unit: Arc::from(rule.spec.measure.unit(&slot.unit)),
                remind_ms: rule.remind_ms,
                decimals: u8::try_from(rule.spec.precision).ok(),
            },
        );
        crate::engine::render_hazard(&rule.spec.message, rule.spec.precision, None, &self.names, &mut ev);
        out.push(ev);
    }

    /// After a covered binding of `sensor` changed level: raises its note at the first
    /// withheld level, clears it when none is left. `reading` is (event time, value) of the
    /// reading that moved it, if one did.
    pub(crate) fn update_note(
        &mut self,
        sensor: &SensorId,
        now: Timestamp,
        reading: Option<(Timestamp, f64)>,
        out: &mut Vec<AlertEvent>,
    ) {
        let Some(slot) = self.sensors.get(sensor) else { return };
        let withheld = slot
            .bindings
            .iter()
            .filter(|b| self.oos.covers(sensor, &slot.site, &self.rules[b.rule].spec.id))
            .filter_map(|b| b.state.level.map(|l| (l, b)))
            .max_by_key(|(l, _)| *l);
        let had = self.oos.notes.get(sensor).cloned();
        let (ts, value) = reading.unwrap_or((now, 0.0));
        let (site_zh, sensor_zh) =
            (self.names.site(slot.site.as_str(), true), self.names.sensor(sensor.as_str(), true));
        let (site_en, sensor_en) =
            (self.names.site(slot.site.as_str(), false), self.names.sensor(sensor.as_str(), false));
        let mut alert = had.clone();
        let mut ev = match (withheld, &had) {
            (Some((level, b)), None) => {
                let rule = &self.rules[b.rule];
                let threshold = b.thresholds.level(level.index()).first().copied().unwrap_or(0.0);
                let unit: Arc<str> = Arc::from(rule.spec.measure.unit(&slot.unit));
                let mut ev = self.book.apply_change(
                    &mut alert,
                    note_change(sensor, &slot.site, &slot.kind, Some(Level::Blue), (ts, now), (value, threshold, unit)),
                );
                let p = rule.spec.precision;
                ev.message_zh = format!(
                    "【停用中】{site_zh} {sensor_zh}：读数 {value:.p$} 达到{}预警（规则 {}），该点停用中，不发布预警",
                    level.zh(),
                    rule.spec.id
                );
                ev.message_en = format!(
                    "Out of service: {sensor_en} ({site_en}) read {value:.p$}, which would raise a {level} alert (rule {}); no alert while out of service",
                    rule.spec.id
                );
                ev
            }
            (None, Some(_)) => {
                let rec = had.as_deref().and_then(|id| self.book.get(id)).cloned();
                let Some(rec) = rec else {
                    self.oos.notes.remove(sensor);
                    return;
                };
                let mut change =
                    note_change(sensor, &slot.site, &slot.kind, None, (ts, now), (value, rec.threshold, rec.unit));
                change.from = Some(Level::Blue);
                let mut ev = self.book.apply_change(&mut alert, change);
                ev.message_zh = format!("【停用中】{site_zh} {sensor_zh}：读数已回落，或该点已恢复运行");
                ev.message_en = format!(
                    "Out of service: {sensor_en} ({site_en}) would raise no alert any more, or is back in service"
                );
                ev
            }
            _ => return,
        };
        ev.by = None;
        match alert {
            Some(id) => self.oos.notes.insert(sensor.clone(), id),
            None => self.oos.notes.remove(sensor),
        };
        self.names.label(&mut ev);
        out.push(ev);
    }

    /// Windows whose end passed while open: their alerts go yellow.
    pub(crate) fn service_overruns(&mut self, now: Timestamp, out: &mut Vec<AlertEvent>) {
        for i in self.oos.overrun_at(now) {
            let target = self.oos.windows[i].target.clone();
            let Some((kind, site)) = self.target_facts(&target) else { continue };
            let (subject, _) = target.subject();
            let w = &mut self.oos.windows[i];
            w.overrun = true;
            let mut ev = self.book.apply_change(
                &mut w.alert,
                window_change(&subject, &site, &kind, Some(Level::Blue), Level::Yellow, now),
            );
            let (zh, en) = target.describe();
            let end = w.until.to_cst_minute();
            ev.message_zh =
                format!("【停用超时】{zh} 计划于 {end}（北京时间）恢复运行，仍处于停用状态（{}：{}）", w.by, w.reason);
            ev.message_en = format!("Out-of-service window overrun: {en} was due back in service at {end} (UTC+8) and is still out ({}: {})", w.by, w.reason);
            self.names.label(&mut ev);
            out.push(ev);
        }
    }

    /// The open out-of-service windows.
    pub fn service_windows(&self) -> &[ServiceWindow] {
        self.oos.windows()
    }
}

/// The data-quality test whose alerts a rule id names (`dq.spike` …), if it names one.
fn dq_test(rule: &str) -> Option<QcTest> {
    QcTest::ALL.into_iter().find(|t| DQ_RULE_IDS[t.index()] == rule)
}

fn window_change<'a>(
    subject: &'a SensorId,
    site: &'a SiteId,
    kind: &'a SensorKind,
    from: Option<Level>,
    to: Level,
    now: Timestamp,
) -> LevelChange<'a> {
    LevelChange {
        rule_id: window_rule(),
        subject,
        site,
        kind,
        category: AlertCategory::DataQuality,
        from,
        to: Some(to),
        ts: now,
        now,
        value: 0.0,
        threshold: 0.0,
        unit: Arc::from(""),
        remind_ms: [None; 4],
        decimals: None,
    }
}

fn note_change<'a>(
    sensor: &'a SensorId,
    site: &'a SiteId,
    kind: &'a SensorKind,
    to: Option<Level>,
    (ts, now): (Timestamp, Timestamp),
    (value, threshold, unit): (f64, f64, Arc<str>),
) -> LevelChange<'a> {
    LevelChange {
        rule_id: note_rule(),
        subject: sensor,
        site,
        kind,
        category: AlertCategory::DataQuality,
        from: None,
        to,
        ts,
        now,
        value,
        threshold,
        unit,
        remind_ms: [None; 4],
        decimals: None,
    }
}

fn window_rule() -> &'static Arc<str> {
    static ID: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    ID.get_or_init(|| Arc::from(WINDOW_RULE_ID))
}

fn note_rule() -> &'static Arc<str> {
    static ID: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    ID.get_or_init(|| Arc::from(NOTE_RULE_ID))
}

/// The officer's part of a window event.
fn finish(ev: &mut AlertEvent, cmd: &ServiceCommand) {
    ev.by = Some(cmd.by.clone());
    ev.command_id = cmd.command_id.clone();
    let note = cmd.note.trim();
    ev.note = (!note.is_empty()).then(|| note.to_string());
}
