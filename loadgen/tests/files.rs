//! Output files: `--log` through `merge`, `--hgrm` through `plot`.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn interval_logs_merge_into_one_report() {
    let dir = TempDir::new("merge");
    let fake = Fake::good(Duration::ZERO);
    let a_log = dir.path("a.hlog");
    let b_log = dir.path("b.hlog");
    let a = run_loadgen(
        &dir,
        "a",
        &[
            "--rate",
            "300",
            "--duration",
            "1500ms",
            "--log",
            a_log.to_str().expect("utf-8"),
            &fake.target(),
        ],
    );
    let b = run_loadgen(
        &dir,
        "b",
        &[
            "-c",
            "2",
            "--count",
            "250",
            "--log",
            b_log.to_str().expect("utf-8"),
            &fake.target(),
        ],
    );
    let log_text = std::fs::read_to_string(&a_log).expect("log");
    assert!(log_text.contains("#[BaseTime: "), "{log_text}");
    assert!(log_text.contains("Tag=connect,"));
    assert!(log_text.contains("#flashpolicy-loadgen: mode=open ok="));

    let merged_json = dir.path("merged.json");
    let out = run_plain(&[
        "merge",
        a_log.to_str().expect("utf-8"),
        b_log.to_str().expect("utf-8"),
        "--json",
        merged_json.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_json).expect("merged json"))
            .expect("json");
    let ok_a = u(&a.json, &["ok"]);
    let ok_b = u(&b.json, &["ok"]);
    assert_eq!(ok_b, 250);
    assert_eq!(u(&m, &["ok"]), ok_a + ok_b);
    // Every recorded sample is in some interval of the logs.
    assert_eq!(u(&m, &["latency_us", "total", "count"]), ok_a + ok_b);
    assert_eq!(u(&m, &["latency_us", "connect", "count"]), ok_a + ok_b);
    let max = u(&m, &["latency_us", "total", "max"]);
    let want_max = u(&a.json, &["latency_us", "total", "max"])
        .max(u(&b.json, &["latency_us", "total", "max"]));
    assert_eq!(max, want_max);
    assert_eq!(errors_total(&m), 0);
    assert_eq!(m["mode"], "mixed");
    assert!(stdout.contains("merge: 2 logs"), "{stdout}");

    // A file that is not a log is refused.
    let junk = dir.path("junk.hlog");
    std::fs::write(&junk, "this is not a log\n").expect("write");
    assert!(!run_plain(&["merge", junk.to_str().expect("utf-8")])
        .status
        .success());
}

#[test]
fn hgrm_files_plot_into_one_svg() {
    let dir = TempDir::new("plot");
    let fast = Fake::good(Duration::ZERO);
    let slow = Fake::good(Duration::from_millis(20));
    let fast_h = dir.path("fast-run.hgrm");
    let slow_h = dir.path("slow-run.hgrm");
    run_loadgen(
        &dir,
        "f",
        &[
            "--rate",
            "300",
            "--count",
            "150",
            "--hgrm",
            fast_h.to_str().expect("utf-8"),
            &fast.target(),
        ],
    );
    run_loadgen(
        &dir,
        "s",
        &[
            "--rate",
            "300",
            "--count",
            "150",
            "--hgrm",
            slow_h.to_str().expect("utf-8"),
            &slow.target(),
        ],
    );
    let text = std::fs::read_to_string(&slow_h).expect("hgrm");
    assert!(
        text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"),
        "{text}"
    );
    assert!(text.contains("#[Max     = "));
    assert!(text.contains("Total count    =          150]"), "{text}");
    // Values are milliseconds: the slow run's median is about 20.
    let median: f64 = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && !l.starts_with('#'))
                .then(|| (f[0].parse::<f64>().ok(), f[1].parse::<f64>().ok()))
        })
        .find_map(|(v, p)| (p? >= 0.5).then_some(v?))
        .expect("a row at or above the median");
    assert!((20.0..200.0).contains(&median), "median {median} ms");

    // Labels from the file names ...
    let svg = dir.path("cmp.svg");
    let svg_s = svg.to_str().expect("utf-8");
    let out = run_plain(&[
        "plot",
        fast_h.to_str().expect("utf-8"),
        slow_h.to_str().expect("utf-8"),
        "-o",
        svg_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = std::fs::read_to_string(&svg).expect("svg written");
    assert!(doc.starts_with("<svg"), "not an SVG");
    assert!(
        doc.contains("fast-run") && doc.contains("slow-run"),
        "labels missing"
    );
    assert!(doc.contains("99%"), "percentile axis labels");
    // ... or from --label.
    let out = run_plain(&[
        "plot",
        fast_h.to_str().expect("utf-8"),
        slow_h.to_str().expect("utf-8"),
        "-o",
        svg_s,
        "--label",
        "epoll",
        "--label",
        "uring",
    ]);
    assert!(out.status.success());
    let doc = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        doc.contains(">epoll<") || doc.contains("epoll"),
        "label epoll"
    );
    assert!(doc.contains("uring"), "label uring");
}
