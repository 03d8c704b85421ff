//! One origin publishing at its maximum rate while others publish normally, via
//! the real `tidings bench load` command (a small flood, seconds).
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn a_flooding_origin_is_rate_limited_and_honest_updates_converge() {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["bench", "load", "--records", "2000", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let verdicts: u64 = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[1].as_u64().unwrap())
        .sum();
    assert!(
        verdicts >= 2000,
        "every flood record got a verdict: {report}"
    );
    // The origin's bucket lets a burst of 20 through, then about one every 5 s.
    assert!(
        report["accepted_from_flooding_origin"].as_u64().unwrap() <= 25,
        "{report}"
    );
    assert!(report["rate_limited"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["honest_update_converged_ms"].as_f64().is_some(),
        "{report}"
    );
    assert!(
        report["target_records_held"].as_u64().unwrap() <= 4,
        "bounded by the roster: {report}"
    );
}
