//! Table tests: cases taken from each client's documentation or code (the
//! source named with each table).

use super::*;

fn doc(rules: &str) -> String {
    format!("<?xml version=\"1.0\"?>\n<cross-domain-policy>\n{rules}\n</cross-domain-policy>")
}

fn rule(domain: &str, ports: &str) -> String {
    format!("<allow-access-from domain=\"{domain}\" to-ports=\"{ports}\"/>")
}

fn origin(text: &str) -> Origin {
    text.parse().expect("origin")
}

/// Whether `client` grants `origin` → `port` from `document` served on
/// `policy_port` (as the master when it is 843).
fn grants(client: Client, document: &str, policy_port: u16, from: &str, port: u16) -> bool {
    let policy = client
        .parse(document.as_bytes(), policy_port, policy_port == MASTER_PORT)
        .unwrap_or_else(|e| panic!("{client}: {e}"));
    client.grants(&policy, &origin(from), port).is_some()
}

#[test]
fn domain_matching_flash() {
    // Adobe cross-domain policy specification, `domain`: `*`, `*.x` also
    // matching `x`, exact hosts case-insensitively, IPs literally.
    let d = doc(&[rule("*.example.com", "843"), rule("192.0.2.7", "843")].join("\n"));
    for (from, want) in [
        ("http://example.com", true),
        ("https://a.b.EXAMPLE.com", true),
        ("badexample.com", false),
        ("192.0.2.7", true),
        ("192.0.2.8", false),
    ] {
        assert_eq!(grants(Client::Flash, &d, 843, from, 843), want, "{from}");
        // Lightspark `URLInfo::matchesDomain` agrees on these.
        assert_eq!(
            grants(Client::Lightspark, &d, 843, from, 843),
            want,
            "{from}"
        );
        // Unity: `IsSocketConnectionAllowed` returns `Domain == "*"`.
        assert!(!grants(Client::Unity, &d, 843, from, 843), "{from}");
    }
    let any = doc(&rule("*", "843"));
    assert!(grants(Client::Unity, &any, 843, "anything.example", 843));
}

#[test]
fn port_ranges_per_client() {
    // Flash: inclusive ranges (Adobe, `to-ports`: "507,516-523").
    // Unity: the range end is exclusive (issue 10: `9000-9001` is 9000).
    // Lightspark: `PolicyAllowAccessFrom` keeps the first port of an item.
    let d = doc(&rule("*", "443,8000-8100,9000-9001"));
    let table: &[(u16, bool, bool, bool)] = &[
        // port, flash, unity, lightspark
        (443, true, true, true),
        (8000, true, true, true),
        (8050, true, true, false),
        (8099, true, true, false),
        (8100, true, false, false),
        (9000, true, true, true),
        (9001, true, false, false),
        (8101, false, false, false),
    ];
    for &(port, flash, unity, lightspark) in table {
        assert_eq!(
            grants(Client::Flash, &d, 843, "a.com", port),
            flash,
            "flash {port}"
        );
        assert_eq!(
            grants(Client::Unity, &d, 843, "a.com", port),
            unity,
            "unity {port}"
        );
        assert_eq!(
            grants(Client::Lightspark, &d, 843, "a.com", port),
            lightspark,
            "lightspark {port}"
        );
    }
    let all = doc(&rule("*", "*"));
    for client in Client::ALL {
        assert!(grants(client, &all, 843, "a.com", 1), "{client}");
        assert!(grants(client, &all, 843, "a.com", 65535), "{client}");
    }
}

#[test]
fn high_policy_ports_grant_only_high_ports() {
    // Adobe FP9 security article: a policy from a port ≥ 1024 grants only
    // ports ≥ 1024. Unity: `policyport > 1024 && port < 1024` (1024 exempt).
    let d = doc(&rule("*", "*"));
    assert!(!grants(Client::Flash, &d, 8843, "a.com", 80));
    assert!(grants(Client::Flash, &d, 8843, "a.com", 1024));
    assert!(!grants(Client::Flash, &d, 1024, "a.com", 1023));
    assert!(grants(Client::Unity, &d, 1024, "a.com", 1023));
    assert!(!grants(Client::Unity, &d, 1025, "a.com", 1023));
    assert!(grants(Client::Flash, &d, 843, "a.com", 80));
}

#[test]
fn secure_against_the_origin_scheme() {
    // Adobe, `secure`: `true` grants only SWFs served over HTTPS. Unity's
    // socket check never reads it.
    let d = doc("<allow-access-from domain=\"*\" to-ports=\"*\" secure=\"true\"/>");
    assert!(grants(Client::Flash, &d, 843, "https://a.com", 9339));
    assert!(!grants(Client::Flash, &d, 843, "http://a.com", 9339));
    assert!(!grants(Client::Lightspark, &d, 843, "a.com", 9339));
    assert!(grants(Client::Unity, &d, 843, "a.com", 9339));
}

#[test]
fn lightspark_rejections() {
    // crossdomainpolicy.cpp `getNextElement` returns INVALID for these.
    let sc = doc(&format!(
        "<site-control permitted-cross-domain-policies=\"all\"/>\n{}",
        rule("*", "*")
    ));
    assert!(Client::Lightspark.parse(sc.as_bytes(), 843, true).is_ok());
    let e = Client::Lightspark
        .parse(sc.as_bytes(), 9339, false)
        .expect_err("site-control off the master");
    assert!(matches!(e, Rejection::Refused { line: 3, .. }), "{e}");
    // Flash only ignores it there.
    assert!(Client::Flash.parse(sc.as_bytes(), 9339, false).is_ok());
    let headers = doc(&format!(
        "{}\n<allow-http-request-headers-from domain=\"*\" headers=\"*\"/>",
        rule("*", "*")
    ));
    let e = Client::Lightspark
        .parse(headers.as_bytes(), 843, true)
        .expect_err("http headers");
    assert!(matches!(e, Rejection::Refused { line: 4, .. }), "{e}");
    assert!(Client::Flash.parse(headers.as_bytes(), 843, true).is_ok());
    let four = doc("<allow-access-from domain=\"*\" to-ports=\"*\" secure=\"false\" x=\"1\"/>");
    assert!(Client::Lightspark
        .parse(four.as_bytes(), 843, true)
        .is_err());
}

#[test]
fn unity_rejects_text_in_the_root() {
    // Unity's parser: "Unexpected cross-domain-policy content".
    let d = doc(&format!("{}\nhello", rule("*", "*")));
    assert!(Client::Unity.parse(d.as_bytes(), 843, true).is_err());
    assert!(Client::Flash.parse(d.as_bytes(), 843, true).is_ok());
}

#[test]
fn read_behaviours() {
    let reply = b"<cross-domain-policy/>\0";
    // Flash: up to the NUL, in any pieces.
    let r = Client::Flash.read(&[&reply[..5], &reply[5..]]);
    assert_eq!((r.document.as_slice(), r.cut), (&reply[..22], false));
    // Unity: one Receive.
    let r = Client::Unity.read(&[&reply[..5], &reply[5..]]);
    assert_eq!((r.document.as_slice(), r.cut), (&reply[..5], true));
    let big = vec![b' '; 6000];
    assert!(Client::Unity.read(&[&big]).cut);
    // Lightspark: 4096-byte reads until a short one; the last byte (NUL,
    // `>` or newline) dropped; anything else refuses the reply.
    let r = Client::Lightspark.read(&[reply]);
    assert_eq!((r.document.as_slice(), r.cut), (&reply[..22], false));
    let r = Client::Lightspark.read(&[&reply[..22]]);
    assert_eq!(r.document.as_slice(), &reply[..21]);
    let r = Client::Lightspark.read(&[&reply[..5], &reply[5..]]);
    assert!(r.cut && r.document.is_empty());
    let mut long = vec![b' '; 4096];
    long.extend_from_slice(reply);
    let r = Client::Lightspark.read(&[&long]);
    assert_eq!((r.document.len(), r.cut), (4096 + 22, false));
}

#[test]
fn origins() {
    assert_eq!(
        origin("https://Game.Example.com:8443/x.swf"),
        Origin {
            https: true,
            host: "Game.Example.com".into()
        }
    );
    assert_eq!(origin("example.com").to_string(), "http://example.com");
    assert_eq!(origin("http://[::1]:80/").host, "::1");
    assert!("ftp://a.com".parse::<Origin>().is_err());
    assert!("https://".parse::<Origin>().is_err());
    assert!("*.a.com".parse::<Origin>().is_err());
}
