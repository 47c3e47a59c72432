use super::*;

fn feed_all(bytes: &[u8]) -> Step {
    HeaderReader::new().feed(bytes)
}

fn sa(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("valid"))
}

/// A v2 header: command `cmd`, family/transport `fam`, then `rest` (the
/// addresses and any TLVs).
pub(crate) fn v2(cmd: u8, fam: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(rest);
    h
}

fn inet4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut a = src.to_vec();
    a.extend_from_slice(&[127, 0, 0, 1]);
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&843u16.to_be_bytes());
    a
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 843\r\n";
    assert_eq!(
        feed_all(line),
        Step::Header {
            client: sa("192.0.2.7:4000"),
            consumed: line.len()
        }
    );
    let line = b"PROXY TCP6 2001:db8::1 ::1 4000 843\r\nrest";
    assert_eq!(
        feed_all(line),
        Step::Header {
            client: sa("[2001:db8::1]:4000"),
            consumed: line.len() - 4
        }
    );
    let line = b"PROXY UNKNOWN whatever\r\n";
    assert_eq!(
        feed_all(line),
        Step::Header {
            client: None,
            consumed: line.len()
        }
    );
}

#[test]
fn v1_is_read_in_any_pieces() {
    let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 843\r\n<x";
    for at in 0..line.len() - 2 {
        let mut r = HeaderReader::new();
        if at > 0 {
            assert_eq!(r.feed(&line[..at]), Step::NeedMore, "split at {at}");
        }
        assert_eq!(
            r.feed(&line[at..]),
            Step::Header {
                client: sa("192.0.2.7:4000"),
                consumed: line.len() - 2 - at
            }
        );
    }
}

#[test]
fn bad_v1_lines_are_invalid() {
    for bad in [
        &b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 843\n"[..],
        b"PROXY TCP4 192.0.2.777 127.0.0.1 4000 843\r\n",
        b"PROXY TCP4 ::1 127.0.0.1 4000 843\r\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 70000 843\r\n",
        b"PROXY UDP4 192.0.2.7 127.0.0.1 4000 843\r\n",
        b"PROXY \xff\r\n",
    ] {
        assert_eq!(
            feed_all(bad),
            Step::Invalid(Invalid::V1Malformed),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(feed_all(b"PROXX"), Step::Invalid(Invalid::Signature));
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN, b'a');
    assert_eq!(feed_all(&long), Step::Invalid(Invalid::V1TooLong));
    // 107 bytes ending in \r\n is the longest valid line.
    long.truncate(V1_MAX_LEN - 2);
    long.extend_from_slice(b"\r\n");
    assert!(matches!(feed_all(&long), Step::Header { .. }));
}

#[test]
fn a_plain_request_is_no_signature() {
    assert_eq!(
        feed_all(b"<policy-file-request/>\0"),
        Step::Invalid(Invalid::Signature)
    );
    assert_eq!(
        feed_all(b"\r\n\r\n\0\r\nQUIX"),
        Step::Invalid(Invalid::Signature)
    );
}

#[test]
fn v2_inet_inet6_local_unspec_unix() {
    let h = v2(1, 0x11, &inet4([198, 51, 100, 9], 5555));
    assert_eq!(
        feed_all(&h),
        Step::Header {
            client: sa("198.51.100.9:5555"),
            consumed: h.len()
        }
    );
    let mut a6 = vec![0x20, 0x01, 0x0d, 0xb8];
    a6.resize(16, 0);
    a6[15] = 5;
    a6.extend_from_slice(&[0; 15]);
    a6.push(1);
    a6.extend_from_slice(&6000u16.to_be_bytes());
    a6.extend_from_slice(&843u16.to_be_bytes());
    let h = v2(1, 0x21, &a6);
    assert_eq!(
        feed_all(&h),
        Step::Header {
            client: sa("[2001:db8::5]:6000"),
            consumed: h.len()
        }
    );
    // LOCAL, whatever its family and block: the real endpoints.
    for (fam, rest) in [
        (0x00, vec![]),
        (0x11, inet4([1, 2, 3, 4], 1)),
        (0xff, vec![7; 3]),
    ] {
        let h = v2(0, fam, &rest);
        assert_eq!(
            feed_all(&h),
            Step::Header {
                client: None,
                consumed: h.len()
            }
        );
    }
    let h = v2(1, 0x00, &[]);
    assert_eq!(
        feed_all(&h),
        Step::Header {
            client: None,
            consumed: 16
        }
    );
    let h = v2(1, 0x31, &[b'/'; 216]);
    assert_eq!(
        feed_all(&h),
        Step::Header {
            client: None,
            consumed: h.len()
        }
    );
}

#[test]
fn v2_tlvs_are_skipped_by_counting() {
    let mut rest = inet4([203, 0, 113, 1], 7);
    // Many TLVs (a NOOP of 60,000 bytes): far more than the reader holds.
    rest.extend_from_slice(&[0x04, 0xea, 0x60]);
    rest.resize(rest.len() + 60_000, 0);
    let mut h = v2(1, 0x11, &rest);
    h.extend_from_slice(b"<policy");
    let mut r = HeaderReader::new();
    let mut got = None;
    for (k, chunk) in h.chunks(61).enumerate() {
        match r.feed(chunk) {
            Step::NeedMore => {}
            Step::Header { client, consumed } => {
                got = Some((k * 61 + consumed, client));
                break;
            }
            Step::Invalid(why) => panic!("{why}"),
        }
    }
    assert_eq!(got, Some((h.len() - 7, sa("203.0.113.1:7"))));
}

#[test]
fn bad_v2_headers_are_invalid() {
    let mut h = v2(1, 0x11, &inet4([1, 1, 1, 1], 1));
    h[12] = 0x11;
    assert_eq!(feed_all(&h), Step::Invalid(Invalid::V2Version(1)));
    h[12] = 0x22;
    assert_eq!(feed_all(&h), Step::Invalid(Invalid::V2Command(2)));
    h[12] = 0x21;
    for fam in [0x12, 0x41, 0x13] {
        h[13] = fam;
        assert_eq!(feed_all(&h), Step::Invalid(Invalid::V2Family(fam)));
    }
    let h = v2(1, 0x21, &inet4([1, 1, 1, 1], 1));
    assert_eq!(
        feed_all(&h),
        Step::Invalid(Invalid::V2Length { len: 12, need: 36 })
    );
}

#[test]
fn truncation_and_later_bytes() {
    let mut r = HeaderReader::new();
    assert_eq!(r.feed(b"PROXY TCP4 "), Step::NeedMore);
    assert_eq!(r.eof(), Step::Invalid(Invalid::Truncated { received: 11 }));
    assert_eq!(r.feed(b"x"), Step::Invalid(Invalid::AfterVerdict));
    let mut r = HeaderReader::new();
    assert!(matches!(r.feed(b"PROXY UNKNOWN\r\n"), Step::Header { .. }));
    assert_eq!(r.feed(b"x"), Step::Invalid(Invalid::AfterVerdict));
    assert_eq!(r.eof(), Step::Invalid(Invalid::AfterVerdict));
}
