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
