//! Smoke runs of the built `dinomo-bench` against `redis-server`s that the tests start on
//! 127.0.0.1: a run with `--json`, a run without a load phase, `compare` with Redis on both sides,
//! and a small cache sweep. They check counts and the shape of the reports, never timings.

mod common;

use common::{Redis, TempDir, assert_success, bench, read_json, redis_available};

/// The template of a Redis that stands in for dinomo.
const REDIS_AS_DINOMO: &str =
    r#"redis-server --port {port} --bind 127.0.0.1 --save "" --appendonly no --dir {dir}"#;

#[test]
fn run_against_redis_writes_a_complete_report() {
    if !redis_available("run_against_redis_writes_a_complete_report") {
        return;
    }
    let redis = Redis::start();
    let dir = TempDir::new("run");
    let json = dir.path("report.json");
    let output = bench(&[
        "--target",
        &redis.target(),
        "--workload",
        "A",
        "--records",
        "1000",
        "--ops",
        "3000",
        "--threads",
        "2",
        "--pipeline",
        "8",
        "--value-size",
        "100",
        "--seed",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("throughput"), "{stdout}");

    let report = read_json(&json);
    assert_eq!(report["schema"], "dinomo-bench/run/1");
    assert_eq!(report["ops"], 3000);
    assert_eq!(report["ops_requested"], 3000);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["records"], 1000);
    assert_eq!(report["load"]["records"], 1000);
    assert_eq!(report["load"]["errors"], 0);
    assert_eq!(report["workload"], "a");
    assert_eq!(report["distribution"], "scrambled-zipfian(0.99)");
    assert_eq!(report["threads"], 2);
    assert_eq!(report["pipeline"], 8);
    assert_eq!(report["value_bytes"], 100);
    assert_eq!(report["seed"], 3);
    assert_eq!(report["target"], redis.target());
    let by_type = &report["ops_by_type"];
    assert_eq!(
        by_type["read"].as_u64().unwrap() + by_type["update"].as_u64().unwrap(),
        3000
    );
    // Every record was loaded, so no read comes back empty.
    assert_eq!(report["nil_replies"], 0);
    assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0);
    let latency = &report["latency_us"];
    let (p50, p99, p999) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["p999"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{latency}");
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["cpu_model"].is_string());
    assert!(report["date"].as_str().unwrap().ends_with('Z'));
    assert!(
        report["server_version"]
            .as_str()
            .unwrap()
            .starts_with("redis_version")
    );
    // Redis has no `INFO dinomo` section: the dinomo-only fields are null.
    for field in [
        "round_trips_per_op",
        "verbs_per_op",
        "bytes_per_op",
        "hit_ratio",
        "by_outcome",
        "dinomo_counters",
    ] {
        assert!(report[field].is_null(), "{field} is {}", report[field]);
    }
}

#[test]
fn read_modify_write_and_no_load() {
    if !redis_available("read_modify_write_and_no_load") {
        return;
    }
    let redis = Redis::start();
    let dir = TempDir::new("rmw");
    let first = dir.path("first.json");
    let second = dir.path("second.json");
    let common = [
        "--target",
        &redis.target(),
        "--records",
        "500",
        "--ops",
        "2000",
        "--value-size",
        "64",
    ];
    let mut args: Vec<&str> = common.to_vec();
    args.extend(["--workload", "F", "--json", first.to_str().unwrap()]);
    assert_success(&bench(&args));
    let report = read_json(&first);
    let rmw = report["ops_by_type"]["read_modify_write"].as_u64().unwrap();
    let reads = report["ops_by_type"]["read"].as_u64().unwrap();
    assert_eq!(reads + rmw, 2000);
    assert_eq!(report["requests"].as_u64().unwrap(), reads + 2 * rmw);

    // The records loaded by the first run are still there for a run without a load phase.
    let mut args: Vec<&str> = common.to_vec();
    args.extend([
        "--workload",
        "C",
        "--no-load",
        "--uniform",
        "--json",
        second.to_str().unwrap(),
    ]);
    assert_success(&bench(&args));
    let report = read_json(&second);
    assert!(report["load"].is_null());
    assert_eq!(report["load_phase"], false);
    assert_eq!(report["distribution"], "uniform");
    assert_eq!(report["ops"], 2000);
    assert_eq!(report["nil_replies"], 0);
}

#[test]
fn timed_run() {
    if !redis_available("timed_run") {
        return;
    }
    let redis = Redis::start();
    let dir = TempDir::new("timed");
    let json = dir.path("timed.json");
    assert_success(&bench(&[
        "--target",
        &redis.target(),
        "--workload",
        "D",
        "--records",
        "300",
        "--duration",
        "300ms",
        "--value-size",
        "32",
        "--json",
        json.to_str().unwrap(),
    ]));
    let report = read_json(&json);
    assert!(report["ops"].as_u64().unwrap() > 0);
    assert!(report["ops_requested"].is_null());
    assert_eq!(report["duration_requested_s"], 0.3);
}

#[test]
fn embedded_target_runs_and_reports_dinomo_counters() {
    let dir = TempDir::new("embedded");
    let json = dir.path("embedded.json");
    let output = bench(&[
        "--target",
        "embedded",
        "--workload",
        "B",
        "--records",
        "2000",
        "--ops",
        "20000",
        "--threads",
        "2",
        "--pipeline",
        "8",
        "--value-size",
        "200",
        "--cache-bytes",
        "64KiB",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_success(&output);
    let report = read_json(&json);
    assert_eq!(report["ops"], 20000);
    assert_eq!(report["errors"], 0);
    assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0);
    // A small cache: some reads go to the index, so round trips and READs are counted.
    assert!(
        report["round_trips_per_op"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["verbs_per_op"]["read"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let hits = &report["hit_ratio"];
    let sum: f64 = ["value", "shortcut", "log", "miss"]
        .iter()
        .map(|k| hits[k].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-6, "hit ratios add up to one: {hits}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    // Bad input is an error message, not a panic.
    for args in [
        &[
            "--target",
            "resp://127.0.0.1:1",
            "--records",
            "10",
            "--ops",
            "10",
        ][..],
        &["--target", "resp://127.0.0.1:1", "--cache-policy", "dac"][..],
        &["--workload", "E"][..],
        &["--value-size", "1XB"][..],
        &[][..],
    ] {
        let output = bench(args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn compare_redis_with_redis() {
    if !redis_available("compare_redis_with_redis") {
        return;
    }
    let dir = TempDir::new("compare");
    let json = dir.path("compare.json");
    let output = bench(&[
        "compare",
        "--server-cmd",
        REDIS_AS_DINOMO,
        "--workloads",
        "a,c",
        "--rounds",
        "2",
        "--records",
        "500",
        "--ops",
        "1500",
        "--value-size",
        "100",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("throughput dinomo/redis"), "{stdout}");
    assert!(stdout.contains("appendonly no"), "{stdout}");

    let report = read_json(&json);
    assert_eq!(report["schema"], "dinomo-bench/compare/1");
    assert_eq!(report["durability"], "memory");
    assert_eq!(report["rounds"], 2);
    assert!(report["machine"]["cpu_model"].is_string());
    assert!(
        report["redis"]["durability"]
            .as_str()
            .unwrap()
            .contains("appendonly no")
    );
    assert!(
        report["redis"]["command"]
            .as_str()
            .unwrap()
            .contains("--save ''")
    );
    assert!(
        report["dinomo"]["command"]
            .as_str()
            .unwrap()
            .starts_with("redis-server --port")
    );
    let workloads = report["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 2);
    for workload in workloads {
        let runs = workload["runs"].as_array().unwrap();
        let sides: Vec<&str> = runs.iter().map(|r| r["side"].as_str().unwrap()).collect();
        assert_eq!(sides, ["redis", "dinomo", "redis", "dinomo"]);
        for run in runs {
            assert_eq!(run["report"]["ops"], 1500);
            assert_eq!(run["report"]["errors"], 0);
            assert_eq!(run["report"]["nil_replies"], 0);
        }
        assert_eq!(workload["throughput_ratios"].as_array().unwrap().len(), 2);
        for summary in ["throughput_ratio", "p99_ratio"] {
            let s = &workload[summary];
            let (min, median, max) = (
                s["min"].as_f64().unwrap(),
                s["median"].as_f64().unwrap(),
                s["max"].as_f64().unwrap(),
            );
            assert!(
                0.0 < min && min <= median && median <= max && max.is_finite(),
                "{s}"
            );
        }
    }
}

#[test]
fn cache_sweep_with_a_fresh_server_per_point() {
    if !redis_available("cache_sweep_with_a_fresh_server_per_point") {
        return;
    }
    let dir = TempDir::new("sweep");
    let json = dir.path("cache.json");
    let svg = dir.path("cache.svg");
    // Redis ignores {policy}; its maxmemory stands in for the cache budget.
    let template =
        format!("{REDIS_AS_DINOMO} --maxmemory {{bytes}} --maxmemory-policy allkeys-lru");
    let output = bench(&[
        "sweep",
        "cache",
        "--server-cmd",
        &template,
        "--policies",
        "dac,none",
        "--budgets",
        "50,100",
        "--workloads",
        "c",
        "--distributions",
        "uniform",
        "--records",
        "300",
        "--ops",
        "600",
        "--value-size",
        "64",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_success(&output);
    let report = read_json(&json);
    assert_eq!(report["schema"], "dinomo-bench/sweep/1");
    assert_eq!(report["sweep"], "cache");
    let points = report["points"].as_array().unwrap();
    // none once, then dac at two budgets.
    assert_eq!(points.len(), 3);
    assert_eq!(points[0]["cache_policy"], "none");
    assert_eq!(
        points[0]["throughput_ratio"],
        1.0,
        "{}",
        serde_json::to_string_pretty(&points[0]["report"]).unwrap_or_default()
    );
    assert_eq!(points[2]["budget_percent"], 100.0);
    let dataset = report["dataset_bytes"].as_u64().unwrap();
    assert_eq!(points[2]["cache_bytes"].as_u64().unwrap(), dataset);
    for point in points {
        assert_eq!(point["report"]["ops"], 600);
        assert!(point["round_trips_per_op"].is_null());
        assert!(
            point["throughput_ratio"].as_f64().unwrap() > 0.0,
            "{}",
            serde_json::to_string_pretty(&point["report"]).unwrap_or_default()
        );
        // Each point ran against its own server.
        assert!(
            point["report"]["server_cmd"]
                .as_str()
                .unwrap()
                .contains("--maxmemory")
        );
    }
    let ports: std::collections::HashSet<&str> = points
        .iter()
        .map(|p| p["report"]["target"].as_str().unwrap())
        .collect();
    assert_eq!(ports.len(), 3, "{ports:?}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg") && drawn.contains("no dinomo counters"));
}
