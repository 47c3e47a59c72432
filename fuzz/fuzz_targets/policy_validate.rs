//! Validates arbitrary documents. Errors must carry a position inside the
//! document; a valid policy must render to a document that validates back
//! to the same policy. The `domain`, `to-ports` and `--allow` parsers get
//! the same bytes as text.
#![no_main]

use flashpolicy_proto::policy::{self, parse_allow_spec, DomainPattern, PortSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match policy::validate(data) {
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1);
            let lines = data.split(|&b| b == b'\n').count();
            assert!(e.line as usize <= lines.max(1), "{e}");
            let _ = e.to_string();
        }
        Ok(validated) => {
            for w in &validated.warnings {
                assert!(w.line >= 1 && w.column >= 1);
                let _ = w.to_string();
            }
            let text = validated.policy.render();
            let again = policy::validate(text.as_bytes()).expect("a rendered policy validates");
            assert_eq!(again.policy, validated.policy, "render changed the policy");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = text.parse::<DomainPattern>() {
            assert_eq!(d.to_string().parse::<DomainPattern>(), Ok(d));
        }
        if let Ok(p) = text.parse::<PortSet>() {
            assert_eq!(p.to_string().parse::<PortSet>(), Ok(p));
        }
        let _ = parse_allow_spec(text);
    }
});
