//! Replay's QuestDB reader against a real HTTP server in the test (no QuestDB runs here): it
//! plays back an `/exp` answer in QuestDB's CSV dialect, chunked as QuestDB sends it. Shown:
//! the credentials are sent (basic and bearer), a refusal is reported with its status and
//! QuestDB's text, a closed port is named, and rows are handed on while the answer is still
//! arriving (the server holds back the rest until the reader has passed on the first rows).

use riskwatch_core::{Registry, Timestamp};
use riskwatch_replay::input::{self, Format, InputOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const REGISTRY: &str = r#"
    [[sites]]
    id = "hankou"
    [[sensors]]
    id = "hankou-wl"
    site = "hankou"
    kind = "water_level"
    unit = "m"
"#;

/// How long the server waits for the reader's signal before sending the rest anyway.
const WITHIN: Duration = Duration::from_secs(30);

/// `admin:quest` in base64 (QuestDB's default credentials).
const ADMIN_QUEST: &str = "Basic YWRtaW46cXVlc3Q=";

const HEADER: &str = "\"sensor\",\"ts\",\"value\",\"quality\"\r\n";

fn registry() -> Registry {
    Registry::from_toml(REGISTRY).unwrap()
}

/// Row `i` of the recorded answer: a reading a minute, QuestDB's microsecond timestamps.
fn row(i: u64) -> String {
    let ts = Timestamp(1_594_512_000_000 + i as i64 * 60_000).to_rfc3339();
    let ts = ts.trim_end_matches('Z');
    format!("\"hankou-wl\",\"{ts}000Z\",{:.2},1\r\n", 27.0 + (i % 100) as f64 / 100.0)
}

/// The request head (request line and headers) of one connection.
fn read_head(conn: &mut TcpStream) -> String {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&req).into_owned()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn chunk(conn: &mut TcpStream, data: &[u8]) {
    conn.write_all(format!("{:x}\r\n", data.len()).as_bytes()).unwrap();
    conn.write_all(data).unwrap();
    conn.write_all(b"\r\n").unwrap();
}

/// A server on a free local port answering `n` connections one after the other with
/// `answer(head, conn)`; returns the address and the request heads.
fn serve(n: usize, mut answer: impl FnMut(&str, &mut TcpStream) + Send + 'static) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for _ in 0..n {
            let (mut conn, _) = listener.accept().unwrap();
            let head = read_head(&mut conn);
            answer(&head, &mut conn);
            heads.push(head);
        }
        heads
    });
    (addr, handle)
}

/// QuestDB with HTTP basic auth on: 401 without the right credentials.
fn small_answer_for_admin(head: &str, conn: &mut TcpStream) {
    if header(head, "authorization") == Some(ADMIN_QUEST) {
        let body = format!("{HEADER}{}{}", row(0), row(1));
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/csv; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(answer.as_bytes()).unwrap();
    } else {
        conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"questdb\"\r\nContent-Length: 12\r\n\r\nUnauthorized")
            .unwrap();
    }
}

#[test]
fn basic_credentials_are_sent_and_a_refusal_names_the_status() {
    let (addr, server) = serve(3, small_answer_for_admin);
    let reg = registry();
    let opts = InputOptions::new(Format::Questdb);
    // The services' client string, writer-only keys and all.
    let conf = format!("http::addr={addr};username=admin;password=quest;auto_flush_rows=1000;");
    assert_eq!(Format::guess(&conf).unwrap(), Format::Questdb);
    let loaded = input::load(&conf, &opts, &reg).unwrap();
    assert_eq!(loaded.readings.len(), 2, "{:?}", loaded.rejected);
    // The same credentials in the address.
    assert_eq!(input::load(&format!("http://admin:quest@{addr}"), &opts, &reg).unwrap().readings.len(), 2);
    let wrong = input::load(&format!("http::addr={addr};username=admin;password=nope;"), &opts, &reg).unwrap_err();
    let wrong = format!("{wrong:#}");
    assert!(
        wrong.contains("401 Unauthorized") && wrong.contains("Unauthorized") && wrong.contains("check the username"),
        "{wrong}"
    );
    assert!(wrong.contains(&addr) && !wrong.contains("nope"), "names the address, not the password: {wrong}");
    let heads = server.join().unwrap();
    assert!(heads[0].starts_with("GET /exp?query=SELECT%20sensor"), "{}", heads[0]);
    assert_eq!(header(&heads[0], "authorization"), Some(ADMIN_QUEST));
    assert_eq!(header(&heads[1], "authorization"), Some(ADMIN_QUEST));
}

#[test]
fn a_token_is_sent_as_bearer_and_no_credentials_get_a_hint() {
    let (addr, server) = serve(2, |head, conn| {
        if header(head, "authorization") == Some("Bearer tok-123") {
            let body = format!("{HEADER}{}", row(0));
            conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
                .unwrap();
        } else {
            conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").unwrap();
        }
    });
    let opts = InputOptions::new(Format::Questdb);
    let loaded = input::load(&format!("http::addr={addr};token=tok-123;"), &opts, &registry()).unwrap();
    assert_eq!(loaded.readings.len(), 1);
    let err = format!("{:#}", input::load(&format!("http://{addr}"), &opts, &registry()).unwrap_err());
    assert!(err.contains("401") && err.contains("QuestDB wants credentials"), "{err}");
    server.join().unwrap();
}

#[test]
fn a_closed_port_is_named() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let err = input::load(&format!("http://{addr}"), &InputOptions::new(Format::Questdb), &registry()).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains(&format!("QuestDB at http://{addr}")), "{err}");
    assert!(err.to_ascii_lowercase().contains("connection refused"), "{err}");
}

#[test]
fn rows_are_handed_on_while_the_answer_is_still_arriving() {
    const FIRST: u64 = 150;
    const REST: u64 = 60_000;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (addr, server) = serve(1, move |head, conn| {
        assert_eq!(header(head, "authorization"), Some(ADMIN_QUEST));
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/csv; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        let first: String = std::iter::once(HEADER.to_string()).chain((0..FIRST).map(row)).collect();
        chunk(conn, first.as_bytes());
        // The rest only once the reader has handed on readings (or after WITHIN, and the test fails).
        let signalled = go_rx.recv_timeout(WITHIN).is_ok();
        let rest: String = (FIRST..FIRST + REST).map(row).collect();
        for part in rest.as_bytes().chunks(64 * 1024) {
            chunk(conn, part);
        }
        conn.write_all(b"0\r\n\r\n").unwrap();
        assert!(signalled, "the reader passed on no reading before the whole answer was sent");
    });
    let mut opts = InputOptions::new(Format::Questdb);
    opts.from = Some(Timestamp::parse_rfc3339("2020-07-12T00:00:00Z").unwrap());
    assert!(input::streamable(Format::Questdb));
    let conf = format!("http::addr={addr};username=admin;password=quest;");
    let (mut got, mut batches, mut fractions) = (0u64, 0u64, Vec::new());
    let mut last = i64::MIN;
    let streamed = input::stream(&conf, &opts, &registry(), 100, |b, done| {
        if batches == 0 {
            let _ = go_tx.send(());
        }
        batches += 1;
        assert!(b.iter().all(|r| r.ts.millis() >= last), "in time order");
        last = b.last().map_or(last, |r| r.ts.millis());
        got += b.len() as u64;
        fractions.push(done);
    })
    .unwrap();
    server.join().expect("the server saw the first rows handed on before it sent the rest");
    assert!(streamed.ordered && streamed.rejected.is_empty(), "{:?}", streamed.rejected);
    assert_eq!((got, streamed.readings), (FIRST + REST, FIRST + REST));
    assert!(batches > 1 && fractions.iter().all(Option::is_none), "no length, no fraction");
}
