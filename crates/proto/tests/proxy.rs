//! Property tests of the PROXY stage of a session: any split of a valid v1
//! or v2 header followed by a request is served with the header's client;
//! arbitrary bytes never panic and settle within bounded events.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use flashpolicy_proto::proxy::{ProxySettings, V2_SIGNATURE};
use flashpolicy_proto::request::{MAX_REQUEST_LEN, POLICY_REQUEST};
use flashpolicy_proto::serve::{Action, End, Serving, Session};
use proptest::prelude::*;

static REPLY: &[u8] = b"<cross-domain-policy/>\0";

fn peer() -> SocketAddr {
    "127.0.0.1:55555".parse().expect("valid")
}

/// A header and the client it should yield.
#[derive(Debug, Clone)]
struct Case {
    bytes: Vec<u8>,
    client: SocketAddr,
}

fn client_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
    ]
}

fn v1(client: SocketAddr) -> Case {
    let (proto, dst) = match client.ip() {
        IpAddr::V4(_) => ("TCP4", "127.0.0.1"),
        IpAddr::V6(_) => ("TCP6", "::1"),
    };
    let line = format!(
        "PROXY {proto} {} {dst} {} 843\r\n",
        client.ip(),
        client.port()
    );
    Case {
        bytes: line.into_bytes(),
        client,
    }
}

fn v2(client: SocketAddr, tlvs: &[u8], local: bool) -> Case {
    let mut rest = Vec::new();
    let fam = match client.ip() {
        IpAddr::V4(ip) => {
            rest.extend_from_slice(&ip.octets());
            rest.extend_from_slice(&[127, 0, 0, 1]);
            0x11
        }
        IpAddr::V6(ip) => {
            rest.extend_from_slice(&ip.octets());
            rest.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            0x21
        }
    };
    rest.extend_from_slice(&client.port().to_be_bytes());
    rest.extend_from_slice(&843u16.to_be_bytes());
    rest.extend_from_slice(tlvs);
    let mut h = V2_SIGNATURE.to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    h.push(fam);
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(&rest);
    Case {
        bytes: h,
        // LOCAL: the real endpoints, whatever the block says.
        client: if local { peer() } else { client },
    }
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        client_addr().prop_map(v1),
        (
            client_addr(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>()
        )
            .prop_map(|(c, tlvs, local)| v2(c, &tlvs, local)),
        Just(Case {
            bytes: b"PROXY UNKNOWN\r\n".to_vec(),
            client: peer()
        }),
    ]
}

/// Cuts `bytes` at the given points (taken modulo its length).
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_of_a_header_and_request_is_served(
        case in case(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let settings = ProxySettings::default();
        let ctx = Serving::new(REPLY, Some(&settings));
        let mut s = Session::new();
        prop_assert_eq!(s.on_accepted(&ctx, Some(peer())), Action::Recv);
        let mut stream = case.bytes.clone();
        stream.extend_from_slice(POLICY_REQUEST);
        let mut last = Action::Recv;
        for chunk in split(&stream, &cuts) {
            prop_assert_eq!(last, Action::Recv, "answered before the request was complete");
            last = s.on_bytes(&chunk, &ctx);
        }
        prop_assert_eq!(last, Action::Send(REPLY));
        prop_assert_eq!(s.client(), Some(case.client));
        prop_assert_eq!(s.on_sent(REPLY.len()), Action::Close(End::Served));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_settle(
        start in prop_oneof![
            Just(Vec::new()),
            Just(b"PROXY ".to_vec()),
            Just(V2_SIGNATURE.to_vec()),
            Just([&V2_SIGNATURE[..], &[0x21, 0x11]].concat()),
        ],
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..12),
    ) {
        let settings = ProxySettings::default();
        let ctx = Serving::new(REPLY, Some(&settings));
        let mut s = Session::new();
        s.on_accepted(&ctx, Some(peer()));
        let mut fed = 0usize;
        let mut ended = None;
        for chunk in std::iter::once(start).chain(chunks) {
            if chunk.is_empty() { continue; }
            fed += chunk.len();
            let action = s.on_bytes(&chunk, &ctx);
            if let Some(end) = ended {
                prop_assert_eq!(action, Action::Close(end), "an ended session changed its answer");
            }
            match action {
                // Still reading: within the longest header and request.
                Action::Recv => prop_assert!(fed <= 16 + 65_535 + MAX_REQUEST_LEN),
                Action::Close(end) => { ended.get_or_insert(end); }
                Action::Send(_) => {}
            }
        }
        // End-of-stream, then the deadline, end whatever is left.
        s.on_eof(&ctx);
        prop_assert!(matches!(s.on_deadline(), Action::Close(_)));
        if s.client().is_none() {
            prop_assert!(!matches!(s.end(), Some(End::Served)), "served without a client");
        }
    }
}
