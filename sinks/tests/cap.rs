//! CAP 1.2 output checked against the standard's schema (OASIS CAP-V1.2, the XSD's element
//! sequences, cardinalities and enumerations transcribed below) for every kind of event a flood
//! produces, live and drill.

mod support;

use riskwatch_core::{AlertCategory, AlertChange};
use riskwatch_sinks::cap::{alert_xml, CapContext, CAP_NS};
use support::{flood_events, registry};

/// One element of an XSD sequence: name, minOccurs, maxOccurs (None = unbounded), and the
/// allowed values for enumerated simple types.
type Slot = (&'static str, usize, Option<usize>, &'static [&'static str]);

const ALERT: &[Slot] = &[
    ("identifier", 1, Some(1), &[]),
    ("sender", 1, Some(1), &[]),
    ("sent", 1, Some(1), &[]),
    ("status", 1, Some(1), &["Actual", "Exercise", "System", "Test", "Draft"]),
    ("msgType", 1, Some(1), &["Alert", "Update", "Cancel", "Ack", "Error"]),
    ("source", 0, Some(1), &[]),
    ("scope", 1, Some(1), &["Public", "Restricted", "Private"]),
    ("restriction", 0, Some(1), &[]),
    ("addresses", 0, Some(1), &[]),
    ("code", 0, None, &[]),
    ("note", 0, Some(1), &[]),
    ("references", 0, Some(1), &[]),
    ("incidents", 0, Some(1), &[]),
    ("info", 0, None, &[]),
];

const INFO: &[Slot] = &[
    ("language", 0, Some(1), &[]),
    (
        "category",
        1,
        None,
        &[
            "Geo",
            "Met",
            "Safety",
            "Security",
            "Rescue",
            "Fire",
            "Health",
            "Env",
            "Transport",
            "Infra",
            "CBRNE",
            "Other",
        ],
    ),
    ("event", 1, Some(1), &[]),
    (
        "responseType",
        0,
        None,
        &["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"],
    ),
    ("urgency", 1, Some(1), &["Immediate", "Expected", "Future", "Past", "Unknown"]),
    ("severity", 1, Some(1), &["Extreme", "Severe", "Moderate", "Minor", "Unknown"]),
    ("certainty", 1, Some(1), &["Observed", "Likely", "Possible", "Unlikely", "Unknown"]),
    ("audience", 0, Some(1), &[]),
    ("eventCode", 0, None, &[]),
    ("effective", 0, Some(1), &[]),
    ("onset", 0, Some(1), &[]),
    ("expires", 0, Some(1), &[]),
    ("senderName", 0, Some(1), &[]),
    ("headline", 0, Some(1), &[]),
    ("description", 0, Some(1), &[]),
    ("instruction", 0, Some(1), &[]),
    ("web", 0, Some(1), &[]),
    ("contact", 0, Some(1), &[]),
    ("parameter", 0, None, &[]),
    ("resource", 0, None, &[]),
    ("area", 0, None, &[]),
];

const AREA: &[Slot] = &[
    ("areaDesc", 1, Some(1), &[]),
    ("polygon", 0, None, &[]),
    ("circle", 0, None, &[]),
    ("geocode", 0, None, &[]),
    ("altitude", 0, Some(1), &[]),
    ("ceiling", 0, Some(1), &[]),
];

const NAMED_VALUE: &[Slot] = &[("valueName", 1, Some(1), &[]), ("value", 1, Some(1), &[])];

/// Checks `node`'s child elements against an XSD sequence; recurses into the complex ones.
fn check(node: roxmltree::Node<'_, '_>, seq: &[Slot], path: &str) {
    let children: Vec<_> = node.children().filter(|c| c.is_element()).collect();
    let mut i = 0;
    for &(name, min, max, values) in seq {
        let mut n = 0;
        while i < children.len() && children[i].tag_name().name() == name {
            let c = children[i];
            assert_eq!(c.tag_name().namespace(), Some(CAP_NS), "{path}/{name}: namespace");
            let text = c.text().unwrap_or_default();
            if !values.is_empty() {
                assert!(values.contains(&text), "{path}/{name} = {text:?} is not one of {values:?}");
            }
            match name {
                "info" => check(c, INFO, &format!("{path}/info")),
                "area" => check(c, AREA, &format!("{path}/area")),
                "parameter" | "geocode" | "eventCode" => check(c, NAMED_VALUE, &format!("{path}/{name}")),
                _ => assert!(!text.trim().is_empty(), "{path}/{name} is empty"),
            }
            n += 1;
            i += 1;
        }
        assert!(n >= min, "{path}/{name}: required (minOccurs {min}), found {n}");
        if let Some(max) = max {
            assert!(n <= max, "{path}/{name}: at most {max}, found {n}");
        }
    }
    assert_eq!(
        i,
        children.len(),
        "{path}: unexpected or out-of-order element <{}>",
        children[i.min(children.len() - 1)].tag_name().name()
    );
}

/// CAP dateTime: `YYYY-MM-DDThh:mm:ss±hh:mm`, no `Z` and no fractions.
fn is_cap_time(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 25
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (b[19] == b'+' || b[19] == b'-')
        && b[22] == b':'
        && s.chars().enumerate().all(|(i, c)| [4, 7, 10, 13, 16, 19, 22].contains(&i) || c.is_ascii_digit())
}

#[test]
fn every_event_of_a_flood_is_valid_cap_1_2() {
    let registry = registry();
    let ctx = CapContext {
        sender: "riskwatch@wuhan.example",
        sender_name: "武汉市防汛抗旱指挥部 <test> & co",
        site: registry.site("hankou"),
        location: registry.sensor("hankou-wl").and_then(|s| s.location),
    };
    let mut checked = 0;
    for exercise in [false, true] {
        let events = flood_events(exercise);
        assert!(events.iter().any(|e| e.change == AlertChange::Cleared));
        for e in &events {
            let xml = alert_xml(e, &ctx);
            let doc =
                roxmltree::Document::parse(&xml).unwrap_or_else(|err| panic!("not well-formed XML ({err}):\n{xml}"));
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "alert");
            assert_eq!(root.tag_name().namespace(), Some(CAP_NS));
            check(root, ALERT, "alert");
            let get = |name: &str| -> Vec<String> {
                root.descendants()
                    .filter(|n| n.has_tag_name(name))
                    .map(|n| n.text().unwrap_or_default().to_string())
                    .collect()
            };
            // Identifier and sender: no spaces, commas or restricted characters.
            for f in ["identifier", "sender"] {
                assert!(get(f)[0].chars().all(|c| !c.is_whitespace() && c != ',' && c != '<' && c != '&'), "{f}");
            }
            for f in ["sent", "onset"] {
                for t in get(f) {
                    assert!(is_cap_time(&t), "{f} = {t:?}");
                }
            }
            assert_eq!(get("status")[0], if exercise { "Exercise" } else { "Actual" });
            if exercise {
                assert!(!get("note").is_empty(), "an exercise says so in <note>");
            }
            if e.change == AlertChange::Raised {
                assert_eq!(get("msgType")[0], "Alert");
            } else {
                assert_eq!(get("msgType")[0], "Update");
                // references: "sender,identifier,sent" of the alert's first message.
                let r = get("references")[0].clone();
                let parts: Vec<&str> = r.split(',').collect();
                assert_eq!(parts.len(), 3, "{r}");
                assert_eq!(parts[0], get("sender")[0]);
                assert_eq!(parts[1], format!("{}-0", e.alert_id));
                assert!(is_cap_time(parts[2]));
            }
            // Two info blocks, Chinese and English, with the colour's severity.
            assert_eq!(get("language"), vec!["zh-CN", "en-US"]);
            let severity = match e.level.as_str() {
                "red" => "Extreme",
                "orange" => "Severe",
                "yellow" => "Moderate",
                _ => "Minor",
            };
            assert_eq!(get("severity"), vec![severity, severity], "{:?} {:?}", e.change, e.level);
            assert_eq!(get("category")[0], "Met", "water level is meteorological/hydrological");
            if e.change == AlertChange::Cleared {
                assert_eq!(get("urgency")[0], "Past");
                assert_eq!(get("responseType")[0], "AllClear");
            }
            assert_eq!(get("circle")[0], "30.580000,114.290000 0");
            assert_eq!(get("areaDesc"), vec!["汉口", "Hankou"]);
            assert_eq!(get("senderName")[0], "武汉市防汛抗旱指挥部 <test> & co", "escaped and read back intact");
            assert!(e.category != AlertCategory::DataQuality);
            checked += 1;
        }
    }
    assert!(checked >= 10, "checked {checked} messages");
}

/// What a warning platform shows the public: a headline made of level, event and area names,
/// never an internal id or what an officer wrote.
#[test]
fn public_fields_carry_names_not_ids_or_officers_notes() {
    let registry = registry();
    let site = registry.site("hankou").cloned();
    let ctx = CapContext { sender: "riskwatch", sender_name: "", site: site.as_ref(), location: None };
    let events = flood_events(false);
    let raised = events.iter().find(|e| e.change == AlertChange::Raised).unwrap();
    let mut ack = raised.clone();
    ack.change = AlertChange::Acknowledged;
    ack.seq = 7;
    ack.event_id = format!("{}-7", ack.alert_id);
    ack.by = Some("li.wei".into());
    ack.note = Some("checking on site, call 13800000000".into());
    ack.message_zh = "【蓝色预警】汉口 hankou-wl：li.wei 已确认：checking on site, call 13800000000".to_string();
    for e in [raised, &ack] {
        let xml = alert_xml(e, &ctx);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let get = |name: &str| -> Vec<String> {
            doc.descendants()
                .filter(|n| n.has_tag_name(name))
                .map(|n| n.text().unwrap_or_default().to_string())
                .collect()
        };
        let headlines = get("headline");
        assert_eq!(headlines[0], "汉口 水位蓝色预警", "{xml}");
        assert_eq!(headlines[1], "water level blue warning: Hankou", "{xml}");
        for public in get("headline").into_iter().chain(get("description")) {
            assert!(!public.contains(&e.alert_id), "alert id in a public field: {public}");
            assert!(
                !public.contains("li.wei") && !public.contains("13800000000"),
                "officer's note made public: {public}"
            );
        }
    }
    let xml = alert_xml(&ack, &ctx);
    assert!(xml.contains("值班人员已确认"), "the public hears that it is being handled: {xml}");
    // The area is coded by its administrative division, as platforms route warnings.
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let geocode: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("geocode"))
        .flat_map(|g| g.children().filter(|c| c.is_element()).filter_map(|c| c.text()))
        .collect();
    assert_eq!(geocode, ["GB/T 2260", "420102", "GB/T 2260", "420102"], "{xml}");
}

/// An element as quick-xml's namespace-aware reader reads it back: local name, namespace, text
/// (entity and character references resolved) and child elements.
#[derive(Debug, Default)]
struct El {
    name: String,
    ns: Option<String>,
    text: String,
    children: Vec<El>,
}

impl El {
    fn child(&self, name: &str) -> &El {
        self.children.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("<{}> has no <{name}>", self.name))
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Parses a document with quick-xml's `NsReader`; panics on anything malformed.
fn read_back(xml: &str) -> El {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::reader::NsReader::from_str(xml);
    let mut stack = vec![El::default()];
    let mut root = None;
    loop {
        let (ns, event) = reader.read_resolved_event().unwrap_or_else(|e| panic!("quick-xml: {e}\n{xml}"));
        let ns = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8(n.as_ref().to_vec()).unwrap()),
            _ => None,
        };
        let el = |s: &quick_xml::events::BytesStart<'_>| El {
            name: String::from_utf8(s.local_name().as_ref().to_vec()).unwrap(),
            ns: ns.clone(),
            ..El::default()
        };
        match event {
            Event::Start(s) => stack.push(el(&s)),
            Event::Empty(s) => stack.last_mut().unwrap().children.push(el(&s)),
            Event::End(_) => {
                let done = stack.pop().unwrap();
                if stack.len() > 1 {
                    stack.last_mut().unwrap().children.push(done);
                } else {
                    assert!(root.is_none(), "two root elements");
                    root = Some(done);
                }
            }
            Event::Text(t) => stack.last_mut().unwrap().text.push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().unwrap();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .unwrap_or_else(|| panic!("undefined entity &{name};"))
                            .to_string()
                    }
                };
                stack.last_mut().unwrap().text.push_str(&text);
            }
            Event::CData(c) => stack.last_mut().unwrap().text.push_str(&c.decode().unwrap()),
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    root.expect("a root element")
}

/// The document read back with quick-xml's reader has CAP's structure: the alert's header, then
/// one info block per language with its fixed vocabularies, area, circle and geocode.
#[test]
fn read_back_with_quick_xml_the_alert_has_caps_structure() {
    let registry = registry();
    let ctx = CapContext {
        sender: "riskwatch@wuhan.example",
        sender_name: "武汉市防汛抗旱指挥部",
        site: registry.site("hankou"),
        location: registry.sensor("hankou-wl").and_then(|s| s.location),
    };
    let events = flood_events(true);
    let cleared = events.iter().find(|e| e.change == AlertChange::Cleared).unwrap();
    for e in [&events[0], cleared] {
        let xml = alert_xml(e, &ctx);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\""), "{xml}");
        let alert = read_back(&xml);
        assert_eq!((alert.name.as_str(), alert.ns.as_deref()), ("alert", Some(CAP_NS)));
        let mut header = vec!["identifier", "sender", "sent", "status", "msgType", "source", "scope", "note"];
        if e.change != AlertChange::Raised {
            header.push("references");
        }
        header.extend(["incidents", "info", "info"]);
        assert_eq!(alert.names(), header, "{xml}");
        assert_eq!(alert.child("identifier").text, e.event_id);
        assert_eq!(alert.child("sender").text, "riskwatch@wuhan.example");
        assert!(is_cap_time(&alert.child("sent").text), "{}", alert.child("sent").text);
        assert_eq!(alert.child("status").text, "Exercise");
        let msg_type = if e.change == AlertChange::Raised { "Alert" } else { "Update" };
        assert_eq!(alert.child("msgType").text, msg_type);
        let infos: Vec<&El> = alert.all("info").collect();
        for (info, lang) in infos.iter().zip(["zh-CN", "en-US"]) {
            assert_eq!(info.child("language").text, lang);
            assert_eq!(info.child("category").text, "Met");
            let event = if lang == "zh-CN" { "水位蓝色预警" } else { "water level blue warning" };
            assert_eq!(info.child("event").text, event);
            let (urgency, response) =
                if e.change == AlertChange::Cleared { ("Past", "AllClear") } else { ("Future", "Monitor") };
            assert_eq!(info.child("urgency").text, urgency);
            assert_eq!(info.child("responseType").text, response);
            assert_eq!(info.child("severity").text, "Minor");
            assert_eq!(info.child("certainty").text, "Observed");
            assert_eq!(info.child("senderName").text, "武汉市防汛抗旱指挥部");
            let (area_name, headline) = match (lang, e.change) {
                ("zh-CN", AlertChange::Cleared) => ("汉口", "汉口 水位蓝色预警解除"),
                ("zh-CN", _) => ("汉口", "汉口 水位蓝色预警"),
                (_, AlertChange::Cleared) => ("Hankou", "water level blue warning cleared: Hankou"),
                _ => ("Hankou", "water level blue warning: Hankou"),
            };
            assert_eq!(info.child("headline").text, headline);
            assert_eq!(info.all("parameter").count(), 7);
            let area = info.child("area");
            assert_eq!(area.names(), ["areaDesc", "circle", "geocode"]);
            assert_eq!(area.child("areaDesc").text, area_name);
            assert_eq!(area.child("circle").text, "30.580000,114.290000 0");
            let geocode = area.child("geocode");
            assert_eq!(geocode.child("valueName").text, "GB/T 2260");
            assert_eq!(geocode.child("value").text, "420102");
            for el in [*info, area, geocode] {
                assert_eq!(el.ns.as_deref(), Some(CAP_NS), "<{}> in CAP's namespace", el.name);
            }
        }
    }
}

/// Names and notes come from configuration and officers: markup, `]]>`, quotes and characters
/// XML 1.0 forbids must neither break the document nor reach it. What XML can carry reads back
/// intact; the forbidden characters are dropped, and `\r\n` is `\n` (as any parser reads it).
#[test]
fn hostile_names_and_notes_leave_a_well_formed_document_and_read_back() {
    const HOSTILE: &str = "A<b>&amp; \"c\" 'd' ]]> <![CDATA[x]]> </info>\u{1}\u{8}\u{b}\u{c}\u{1b}\u{0}\u{fffe}\u{ffff}\t\r\ne\u{7f}\u{85}\u{10000}";
    const LEGAL: &str = "A<b>&amp; \"c\" 'd' ]]> <![CDATA[x]]> </info>\t\ne\u{7f}\u{85}\u{10000}";
    let registry = registry();
    let mut site = registry.site("hankou").cloned().unwrap();
    site.name = format!("Hankou {HOSTILE}");
    site.name_zh = format!("汉口 {HOSTILE}");
    let ctx = CapContext { sender: "rw\u{1}<&>\"'\u{b}x", sender_name: HOSTILE, site: Some(&site), location: None };
    let events = flood_events(false);
    let mut raised = events[0].clone();
    // A data-quality alert is restricted, so its description keeps the officer's name and note.
    raised.category = AlertCategory::DataQuality;
    let mut ack = raised.clone();
    ack.change = AlertChange::Acknowledged;
    ack.by = Some(format!("li.wei {HOSTILE}"));
    ack.note = Some(format!("note {HOSTILE}"));
    ack.message_en = HOSTILE.to_string();
    for e in [&raised, &ack] {
        let xml = alert_xml(e, &ctx);
        let forbidden: Vec<char> = xml
            .chars()
            .filter(|&c| !(matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')))
            .collect();
        assert!(forbidden.is_empty(), "characters XML 1.0 forbids in the document: {forbidden:?}");
        assert!(!xml.contains("<b>") && !xml.contains("]]>"), "markup passed through unescaped:\n{xml}");
        let alert = read_back(&xml);
        // A strict second parser agrees, and the document is still valid CAP.
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|err| panic!("roxmltree: {err}\n{xml}"));
        check(doc.root_element(), ALERT, "alert");
        let sender = &alert.child("sender").text;
        assert_eq!(sender, "rw__>\"'_x", "a token: controls dropped, '<' '&' replaced");
        let infos: Vec<&El> = alert.all("info").collect();
        assert_eq!(infos.len(), 2);
        for (info, name) in infos.iter().zip([format!("汉口 {LEGAL}"), format!("Hankou {LEGAL}")]) {
            assert_eq!(info.child("senderName").text, LEGAL);
            assert_eq!(info.child("area").child("areaDesc").text, name);
            assert!(info.child("headline").text.contains(&name), "{}", info.child("headline").text);
        }
        if e.change == AlertChange::Acknowledged {
            let description = &infos[1].child("description").text;
            let want = format!("{LEGAL}\nacknowledged li.wei {LEGAL}: note {LEGAL}");
            assert_eq!(description, &want);
        }
    }
}
