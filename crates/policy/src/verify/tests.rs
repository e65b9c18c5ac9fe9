//! Unit tests for the probe evaluations: a passing host, then one property broken at a time.

use super::*;
use crate::config::Config;

const TABLE: &str = include_str!("testdata/table-901.nft");
const CA: &str = "-----BEGIN CERTIFICATE-----\nQUJD\nREVG\n-----END CERTIFICATE-----\n";
const ROOT: &str = "-----BEGIN CERTIFICATE-----\nUk9PVA==\n-----END CERTIFICATE-----\n";

fn account(name: &str, uid: u32) -> Account {
    Account {
        name: name.into(),
        uid,
        gid: uid,
        home: "/var/lib/x".into(),
    }
}

fn file(mode: u32, contents: &str) -> FileState {
    FileState {
        mode,
        uid: 0,
        gid: 0,
        contents: Some(contents.into()),
    }
}

fn attempt(target: &str, outcome: NetOutcome) -> Attempt {
    Attempt {
        target: target.into(),
        outcome,
    }
}

/// Observations of a correctly contained host, default config.
fn healthy() -> Observations {
    let wrapper = |tool: &str| format!("#!/bin/sh\nexec {} {tool} \"$@\"\n", paths::LAUNCHER);
    let mut expected = BTreeMap::new();
    let mut found = BTreeMap::new();
    for tool in ["claude", "codex", "gemini"] {
        let path = format!("{}/{tool}", paths::WRAPPER_DIR);
        expected.insert(path.clone(), (0o755, wrapper(tool)));
        found.insert(path, file(0o755, &wrapper(tool)));
    }
    Observations {
        users: UsersObs {
            agent_name: "cc-agent".into(),
            proxy_name: "pipelock-proxy".into(),
            agent: Some(account("cc-agent", 901)),
            proxy: Some(account("pipelock-proxy", 902)),
            login_range: LoginUidRange::default(),
            agent_shadow: Some(crate::facts::ShadowState {
                locked: true,
                expired: true,
            }),
            agent_shell: Some("/usr/sbin/nologin".into()),
        },
        table: TableObs {
            loaded: Ok(Some(TABLE.into())),
            expected: Ok(TABLE.into()),
        },
        rule_file: GeneratedFileObs {
            path: paths::RULE_FILE.into(),
            state: Some(file(0o644, "rules\n")),
            expected: Some("rules\n".into()),
        },
        boot_unit: UnitObs {
            systemd_running: true,
            enabled: "enabled".into(),
            active: "active".into(),
        },
        proxy: ProxyObs {
            systemd_running: true,
            active: "active".into(),
            unit_user: "pipelock-proxy".into(),
            listeners: vec![
                Listener {
                    addr: "127.0.0.1:8888".parse().unwrap(),
                    uid: 902,
                    inode: 0,
                },
                Listener {
                    addr: "0.0.0.0:22".parse().unwrap(),
                    uid: 0,
                    inode: 0,
                },
            ],
        },
        sudoers: SudoersObs {
            file: GeneratedFileObs {
                path: paths::SUDOERS_DROPIN.into(),
                state: Some(file(0o440, "sudoers\n")),
                expected: Some("sudoers\n".into()),
            },
            visudo: Some(Ok(())),
        },
        wrappers: WrappersObs { expected, found },
        ca_bundle: CaBundleObs {
            bundle_path: "/etc/pipelock/combined-ca.pem".into(),
            bundle: Some(file(0o644, &format!("{ROOT}{CA}"))),
            agent_access: Access::Readable,
            proxy_ca_path: "/etc/pipelock/ca.pem".into(),
            proxy_ca: Some(CA.into()),
        },
        ca_key: CaKeyObs {
            key_path: "/etc/pipelock/ca-key.pem".into(),
            key: Some(FileState {
                mode: 0o600,
                uid: 902,
                gid: 902,
                contents: None,
            }),
            agent_access: Access::Unreadable,
        },
        agent_egress: Ok(vec![
            attempt("udp 192.0.2.1:9", NetOutcome::Denied),
            attempt("udp [2001:db8::1]:9", NetOutcome::Unreachable),
        ]),
        agent_via_proxy: FetchObs::Done {
            url: "https://example.test/".into(),
            curl_exit: 0,
            http_code: "200".into(),
            error: String::new(),
        },
        operator_direct: FetchObs::Done {
            url: "https://example.test/".into(),
            curl_exit: 0,
            http_code: "200".into(),
            error: String::new(),
        },
        agent_loopback: Ok(vec![
            attempt("udp 127.0.0.1:9", NetOutcome::Denied),
            attempt("tcp 127.0.0.1:40000", NetOutcome::Refused),
        ]),
        dns: Ok(vec![
            attempt("udp 127.0.0.1:53", NetOutcome::Denied),
            attempt("udp 192.0.2.1:53", NetOutcome::Denied),
        ]),
        sessions: SessionsObs {
            systemd_running: true,
            outside: Vec::new(),
            sessions: vec![SessionView {
                unit: "pipelock-agent-00000000000000ab.service".into(),
                interfaces: vec!["lo".into()],
                routes_out: 0,
                tasks_max: Some(512),
            }],
        },
        watcher: WatcherObs {
            systemd_running: true,
            active: "active".into(),
            state: Some(crate::watch::WatchState::default()),
        },
        audit: AuditObs {
            systemd_running: true,
            active: "active".into(),
            counters: Some(crate::audit::Counters::default()),
        },
        ways_in: WaysInObs {
            sshd: SshdObs::Effective("port 22\ndenyusers cc-agent\n".into()),
            schedulers: vec![
                SchedulerObs {
                    name: "cron",
                    installed: true,
                    allow_path: "/etc/cron.allow".into(),
                    allow: None,
                    deny_path: "/etc/cron.deny".into(),
                    deny: Some("cc-agent\n".into()),
                },
                SchedulerObs {
                    name: "at",
                    installed: false,
                    allow_path: "/etc/at.allow".into(),
                    allow: None,
                    deny_path: "/etc/at.deny".into(),
                    deny: None,
                },
            ],
            dbus: DbusObs {
                path: crate::account::DBUS_POLICY.into(),
                found: Some("policy".into()),
                expected: Ok("policy".into()),
            },
        },
    }
}

#[test]
fn a_stopped_audit_listener_fails_and_a_running_one_reports_its_sessions() {
    let mut obs = healthy();
    obs.audit.active = "inactive".into();
    let probe = only(&obs, "audit-listener", Status::Fail);
    assert!(probe.detail.contains("not recorded"), "{probe:?}");
    let mut obs = healthy();
    obs.audit.counters = Some(crate::audit::Counters {
        blocked: Vec::new(),
        sessions_attached: 2,
    });
    let probe = evaluate(&config(), &obs)
        .into_iter()
        .find(|p| p.name == "audit-listener")
        .unwrap();
    assert_eq!(probe.status, Status::Pass);
    assert!(probe.detail.contains("recording 2 sessions"), "{probe:?}");
}

#[test]
fn a_stopped_watcher_fails_and_a_restore_is_reported() {
    let mut obs = healthy();
    obs.watcher.active = "inactive".into();
    only(&obs, "table-watcher", Status::Fail);
    let mut obs = healthy();
    obs.watcher.state = Some(crate::watch::WatchState {
        restores: 3,
        last_restore: Some("2026-12-02T17:00:00Z".into()),
        last_restore_ms: Some(12),
        last_error: None,
    });
    let probe = evaluate(&config(), &obs)
        .into_iter()
        .find(|p| p.name == "table-watcher")
        .unwrap();
    assert_eq!(probe.status, Status::Pass);
    assert!(
        probe.detail.contains("3 restores") && probe.detail.contains("12 ms"),
        "{}",
        probe.detail
    );
}

#[test]
fn an_agent_process_outside_a_session_fails_and_is_named() {
    let mut obs = healthy();
    obs.sessions.outside = vec![(4242, "curl http://192.0.2.1/".into())];
    let probe = only(&obs, "agent-processes-in-sessions", Status::Fail);
    assert!(
        probe.detail.contains("4242 curl http://192.0.2.1/"),
        "{}",
        probe.detail
    );
}

#[test]
fn a_session_with_a_way_out_or_no_limit_fails() {
    let mut obs = healthy();
    obs.sessions.sessions[0].interfaces.push("eth0".into());
    let probe = only(&obs, "sessions-isolated", Status::Fail);
    assert!(probe.detail.contains("eth0"), "{}", probe.detail);
    let mut obs = healthy();
    obs.sessions.sessions[0].tasks_max = None;
    only(&obs, "sessions-isolated", Status::Fail);
}

fn config() -> Config {
    Config::defaults()
}

/// Evaluate, check that exactly `name` changed from pass to `status`, and return that probe.
fn only(obs: &Observations, name: &str, status: Status) -> Probe {
    let probes = evaluate(&config(), obs);
    let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, PROBE_NAMES);
    for probe in &probes {
        if probe.name == name {
            assert_eq!(probe.status, status, "{probe:?}");
            assert!(!probe.remediation.is_empty(), "{probe:?}");
            assert!(
                !probe.detail.contains('\n'),
                "detail is one line: {probe:?}"
            );
        } else {
            assert_eq!(probe.status, Status::Pass, "{probe:?} should be unaffected");
        }
    }
    probes.into_iter().find(|p| p.name == name).unwrap()
}

#[test]
fn healthy_host_passes_every_probe() {
    let probes = evaluate(&config(), &healthy());
    for probe in &probes {
        assert_eq!(probe.status, Status::Pass, "{probe:?}");
        assert!(!probe.detail.contains('\n'));
    }
    let report = Report::new("h".into(), probes);
    assert!(report.contained);
    assert_eq!(report.exit_code(), exit::OK);
}

#[test]
fn users_missing_or_human_fails() {
    let mut obs = healthy();
    obs.users.agent = None;
    let probe = users(&obs.users);
    assert_eq!(probe.status, Status::Fail);
    assert!(probe.detail.contains("cc-agent does not exist"));

    obs.users.agent = Some(account("cc-agent", 1000));
    assert!(only(&obs, "users", Status::Fail)
        .detail
        .contains("UID 1000"));

    obs.users.agent = Some(account("cc-agent", 902));
    assert!(only(&obs, "users", Status::Fail)
        .detail
        .contains("share UID 902"));
}

#[test]
fn table_not_loaded_fails() {
    let mut obs = healthy();
    obs.table.loaded = Ok(None);
    let probe = only(&obs, "nft-table", Status::Fail);
    assert!(probe.detail.contains("not loaded"), "{probe:?}");
}

#[test]
fn table_with_other_uid_fails_with_diff() {
    let mut obs = healthy();
    obs.table.expected = Ok(TABLE.replace("skuid 901", "skuid 955"));
    let probe = only(&obs, "nft-table", Status::Fail);
    let diff = probe.diff.unwrap();
    assert!(
        diff.contains("-\t\tmeta skuid 955 jump agent_egress"),
        "{diff}"
    );
    assert!(
        diff.contains("+\t\tmeta skuid 901 jump agent_egress"),
        "{diff}"
    );
    assert!(probe.detail.contains("2 lines changed"), "{}", probe.detail);
}

#[test]
fn table_counters_and_blank_lines_are_not_drift() {
    let mut obs = healthy();
    let live = TABLE.replace(
        "counter blocked {\n",
        "counter blocked {\n\t\tpackets 12 bytes 720\n",
    ) + "\n\n";
    obs.table.loaded = Ok(Some(live));
    obs.table.expected = Ok(TABLE.replace(
        "counter blocked {\n",
        "counter blocked {\n\t\tpackets 0 bytes 0\n",
    ));
    assert_eq!(nft_table(&obs.table).status, Status::Pass);
}

#[test]
fn table_render_error_fails() {
    let mut obs = healthy();
    obs.table.expected = Err("nft: syntax error".into());
    assert!(only(&obs, "nft-table", Status::Fail)
        .detail
        .contains("cannot render"));
}

#[test]
fn rule_file_missing_edited_or_writable_fails() {
    let mut obs = healthy();
    obs.rule_file.state = None;
    assert!(only(&obs, "rule-file", Status::Fail)
        .detail
        .contains("missing"));
    obs.rule_file.state = Some(file(0o666, "rules\n"));
    assert!(only(&obs, "rule-file", Status::Fail)
        .detail
        .contains("0666"));
    obs.rule_file.state = Some(file(0o644, "edited\n"));
    let probe = only(&obs, "rule-file", Status::Fail);
    assert!(probe.diff.unwrap().contains("+edited"));
}

#[test]
fn boot_unit_disabled_or_inactive_fails_and_no_systemd_skips() {
    let mut obs = healthy();
    obs.boot_unit.enabled = "disabled".into();
    assert!(only(&obs, "boot-unit", Status::Fail)
        .detail
        .contains("disabled"));
    obs.boot_unit.enabled = "enabled".into();
    obs.boot_unit.active = "failed".into();
    assert!(only(&obs, "boot-unit", Status::Fail)
        .detail
        .contains("failed"));
    obs.boot_unit.systemd_running = false;
    only(&obs, "boot-unit", Status::Skip);
}

#[test]
fn proxy_unit_failures() {
    let mut obs = healthy();
    obs.proxy.active = "inactive".into();
    assert!(only(&obs, "proxy-unit", Status::Fail)
        .detail
        .contains("inactive"));

    let mut obs = healthy();
    obs.proxy.unit_user = String::new();
    assert!(only(&obs, "proxy-unit", Status::Fail)
        .detail
        .contains("runs as root"));

    let mut obs = healthy();
    obs.proxy.listeners.push(Listener {
        addr: "0.0.0.0:8888".parse().unwrap(),
        uid: 902,
        inode: 0,
    });
    assert!(only(&obs, "proxy-unit", Status::Fail)
        .detail
        .contains("0.0.0.0:8888"));

    let mut obs = healthy();
    obs.proxy.listeners[0].uid = 0;
    assert!(only(&obs, "proxy-unit", Status::Fail)
        .detail
        .contains("held by UID 0"));

    let mut obs = healthy();
    obs.proxy.listeners.remove(0);
    assert!(only(&obs, "proxy-unit", Status::Fail)
        .detail
        .contains("nothing listens"));
}

#[test]
fn sudoers_mode_content_and_visudo() {
    let mut obs = healthy();
    obs.sudoers.file.state = Some(file(0o644, "sudoers\n"));
    assert!(only(&obs, "sudoers", Status::Fail).detail.contains("0644"));

    let mut obs = healthy();
    obs.sudoers.file.state = None;
    assert!(only(&obs, "sudoers", Status::Fail)
        .detail
        .contains("missing"));

    let mut obs = healthy();
    obs.sudoers.visudo = Some(Err("syntax error near line 3".into()));
    assert!(only(&obs, "sudoers", Status::Fail)
        .detail
        .contains("line 3"));

    let mut obs = healthy();
    obs.sudoers.file.state = Some(file(0o440, "ALL ALL=(ALL) ALL\n"));
    assert!(only(&obs, "sudoers", Status::Fail).diff.is_some());
}

#[test]
fn wrappers_missing_changed_and_stale() {
    let dir = paths::WRAPPER_DIR;
    let mut obs = healthy();
    obs.wrappers.found.remove(&format!("{dir}/codex"));
    obs.wrappers
        .found
        .insert(format!("{dir}/aider"), file(0o755, "x"));
    obs.wrappers
        .found
        .get_mut(&format!("{dir}/claude"))
        .unwrap()
        .contents = Some("#!/bin/sh\nexec /usr/bin/claude\n".into());
    let probe = only(&obs, "wrappers", Status::Fail);
    assert!(probe.detail.contains("missing codex"), "{}", probe.detail);
    assert!(probe.detail.contains("differ from the config claude"));
    assert!(probe.detail.contains("not in the config aider"));
    assert!(probe.diff.is_some());

    let mut obs = healthy();
    obs.wrappers
        .found
        .get_mut(&format!("{dir}/gemini"))
        .unwrap()
        .mode = 0o777;
    assert!(only(&obs, "wrappers", Status::Fail).detail.contains("0777"));
}

#[test]
fn ca_bundle_failures_and_missing_proxy_ca_skips() {
    let mut obs = healthy();
    obs.ca_bundle.bundle = None;
    assert!(only(&obs, "ca-bundle", Status::Fail)
        .detail
        .contains("missing"));

    let mut obs = healthy();
    obs.ca_bundle.agent_access = Access::Unreadable;
    assert!(only(&obs, "ca-bundle", Status::Fail)
        .detail
        .contains("not readable"));

    let mut obs = healthy();
    obs.ca_bundle.bundle = Some(file(0o644, ROOT));
    assert!(only(&obs, "ca-bundle", Status::Fail)
        .detail
        .contains("does not contain"));

    let mut obs = healthy();
    obs.ca_bundle.proxy_ca = None;
    only(&obs, "ca-bundle", Status::Skip);
}

#[test]
fn pem_bodies_ignore_line_wrapping() {
    let rewrapped = "-----BEGIN CERTIFICATE-----\nQUJDREVG\n-----END CERTIFICATE-----\n";
    assert_eq!(pem_certificates(CA), pem_certificates(rewrapped));
    assert_eq!(pem_certificates(&format!("{ROOT}junk\n{CA}")).len(), 2);
}

#[test]
fn ca_key_readable_by_agent_fails() {
    let mut obs = healthy();
    obs.ca_key.agent_access = Access::Readable;
    obs.ca_key.key.as_mut().unwrap().mode = 0o644;
    assert!(only(&obs, "ca-key", Status::Fail)
        .detail
        .contains("READABLE"));

    let mut obs = healthy();
    obs.ca_key.key.as_mut().unwrap().mode = 0o640;
    assert!(only(&obs, "ca-key", Status::Fail).detail.contains("0640"));

    let mut obs = healthy();
    obs.ca_key.key = None;
    assert_eq!(ca_key(&config(), &obs.ca_key).status, Status::Pass);
}

#[test]
fn agent_egress_that_gets_out_fails() {
    let mut obs = healthy();
    obs.agent_egress = Ok(vec![
        attempt("udp 192.0.2.1:9", NetOutcome::Sent),
        attempt("udp [2001:db8::1]:9", NetOutcome::Unreachable),
    ]);
    let probe = only(&obs, "agent-egress-denied", Status::Fail);
    assert!(probe.detail.contains("NOT blocked"));

    obs.agent_egress = Ok(vec![attempt("udp 192.0.2.1:9", NetOutcome::Unreachable)]);
    only(&obs, "agent-egress-denied", Status::Skip);

    obs.agent_egress = Err("no user".into());
    only(&obs, "agent-egress-denied", Status::Skip);
}

#[test]
fn fetch_probes_skip_without_url_and_fail_on_error() {
    let mut obs = healthy();
    obs.agent_via_proxy = FetchObs::NoUrl;
    assert!(only(&obs, "agent-via-proxy", Status::Skip)
        .detail
        .contains("--url"));

    let mut obs = healthy();
    obs.agent_via_proxy = FetchObs::Done {
        url: "https://example.test/".into(),
        curl_exit: 56,
        http_code: "000".into(),
        error: "curl: (56) CONNECT tunnel failed,\nresponse 403".into(),
    };
    assert!(only(&obs, "agent-via-proxy", Status::Fail)
        .detail
        .contains("curl exit 56"));

    let mut obs = healthy();
    obs.operator_direct = FetchObs::Done {
        url: "https://example.test/".into(),
        curl_exit: 7,
        http_code: "000".into(),
        error: "Failed to connect".into(),
    };
    only(&obs, "operator-direct", Status::Fail);
}

#[test]
fn open_loopback_fails() {
    let mut obs = healthy();
    obs.agent_loopback = Ok(vec![
        attempt("udp 127.0.0.1:9", NetOutcome::Sent),
        attempt("tcp 127.0.0.1:40000", NetOutcome::Connected),
    ]);
    assert!(only(&obs, "agent-loopback-denied", Status::Fail)
        .detail
        .contains("loopback is open"));
}

#[test]
fn dns_policy_blocked_and_loopback_resolver() {
    let mut obs = healthy();
    obs.dns = Ok(vec![
        attempt("udp 127.0.0.1:53", NetOutcome::Sent),
        attempt("udp 192.0.2.1:53", NetOutcome::Denied),
    ]);
    only(&obs, "dns-policy", Status::Fail);

    let mut resolver = config();
    resolver.network.dns = DnsPolicy::LoopbackResolver;
    assert_eq!(dns_policy(&resolver, &obs.dns).status, Status::Pass);
    let denied = Ok(vec![
        attempt("udp 127.0.0.1:53", NetOutcome::Denied),
        attempt("udp 192.0.2.1:53", NetOutcome::Denied),
    ]);
    assert_eq!(dns_policy(&resolver, &denied).status, Status::Fail);
    let open = Ok(vec![
        attempt("udp 127.0.0.1:53", NetOutcome::Sent),
        attempt("udp 192.0.2.1:53", NetOutcome::Sent),
    ]);
    assert_eq!(dns_policy(&resolver, &open).status, Status::Fail);
}

#[test]
fn exit_codes_and_contained() {
    let mut obs = healthy();
    obs.agent_via_proxy = FetchObs::NoUrl;
    let report = Report::new("h".into(), evaluate(&config(), &obs));
    assert!(report.contained);
    assert_eq!(report.exit_code(), exit::SKIPPED);
    obs.table.loaded = Ok(None);
    let report = Report::new("h".into(), evaluate(&config(), &obs));
    assert!(!report.contained);
    assert_eq!(report.exit_code(), exit::FAILURE);
    let text = report.to_text();
    assert!(text.contains("FAIL nft-table"), "{text}");
    assert!(text.contains("NOT contained"), "{text}");
}

#[test]
fn net_outcome_words_round_trip() {
    for outcome in [
        NetOutcome::Denied,
        NetOutcome::Refused,
        NetOutcome::Sent,
        NetOutcome::Connected,
        NetOutcome::TimedOut,
        NetOutcome::Unreachable,
        NetOutcome::Error("Address family not supported".into()),
    ] {
        assert_eq!(NetOutcome::from_word(&outcome.word()), outcome);
    }
}

#[test]
fn proc_net_tcp_listeners() {
    // Little-endian host: 127.0.0.1 prints as 0100007F.
    let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 1225 1 0 100 0 0 10 0\n\
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1226 1 0 100 0 0 10 0\n\
   2: 0100007F:22B8 0100007F:A000 01 00000000:00000000 00:00000000 00000000   998        0 1227 1 0 100 0 0 10 0\n";
    let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:22B8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 1 1 0 100 0 0 10 0\n\
   1: 00000000000000000000000000000000:22B8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 2 1 0 100 0 0 10 0\n";
    if cfg!(target_endian = "little") {
        assert_eq!(
            parse_proc_net_tcp(v4),
            vec![
                Listener {
                    addr: "127.0.0.1:8888".parse().unwrap(),
                    uid: 998,
                    inode: 1225,
                },
                Listener {
                    addr: "0.0.0.0:22".parse().unwrap(),
                    uid: 0,
                    inode: 1226,
                },
            ]
        );
        assert_eq!(
            parse_proc_net_tcp(v6),
            vec![
                Listener {
                    addr: "[::1]:8888".parse().unwrap(),
                    uid: 998,
                    inode: 1,
                },
                Listener {
                    addr: "[::]:8888".parse().unwrap(),
                    uid: 998,
                    inode: 2,
                },
            ]
        );
    }
}

const SCHEMA: &str = include_str!("../../../../docs/verify-schema.json");

fn validate(report: &Report) {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let instance = serde_json::to_value(report).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{instance:#}");
}

#[test]
fn json_output_validates_against_the_documented_schema() {
    let report = Report::new("host1".into(), evaluate(&config(), &healthy()));
    validate(&report);
    let mut obs = healthy();
    obs.table.expected = Ok(TABLE.replace("skuid 901", "skuid 955"));
    obs.agent_via_proxy = FetchObs::NoUrl;
    let report = Report::new("host1".into(), evaluate(&config(), &obs));
    assert!(report.probe("nft-table").unwrap().diff.is_some());
    validate(&report);
}

#[test]
fn schema_rejects_what_it_must() {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut doc =
        serde_json::to_value(Report::new("h".into(), evaluate(&config(), &healthy()))).unwrap();
    doc["probes"][0]["status"] = "ok".into();
    assert!(!validator.is_valid(&doc));
    doc["probes"][0]["status"] = "pass".into();
    doc["probes"][0]["detail"] = "two\nlines".into();
    assert!(!validator.is_valid(&doc));
    doc["probes"][0]["detail"] = "one line".into();
    doc["schema_version"] = 2.into();
    assert!(!validator.is_valid(&doc));
}

#[test]
fn schema_lists_every_probe_name() {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let examples: Vec<&str> = schema["$defs"]["probe"]["properties"]["name"]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        examples, PROBE_NAMES,
        "docs/verify-schema.json lists the probe names: update it with PROBE_NAMES"
    );
}

#[test]
fn an_agent_account_that_can_log_in_fails() {
    let mut obs = healthy();
    obs.users.agent_shadow = Some(crate::facts::ShadowState {
        locked: true,
        expired: false,
    });
    let probe = only(&obs, "account-locked", Status::Fail);
    assert!(probe.detail.contains("not expired"), "{}", probe.detail);
    let mut obs = healthy();
    obs.users.agent_shell = Some("/bin/bash".into());
    only(&obs, "account-locked", Status::Fail);
    let mut obs = healthy();
    obs.users.agent_shadow = None;
    only(&obs, "account-locked", Status::Skip);
}

#[test]
fn ways_into_the_agent_account_fail_their_probes() {
    let mut obs = healthy();
    obs.ways_in.sshd = SshdObs::Effective("port 22\ndenyusers other\n".into());
    let probe = only(&obs, "ssh-denied", Status::Fail);
    assert!(
        probe.remediation.contains("DenyUsers cc-agent"),
        "{}",
        probe.remediation
    );
    obs.ways_in.sshd = SshdObs::NotInstalled;
    assert_eq!(
        ssh_denied("cc-agent", &obs.ways_in.sshd).status,
        Status::Pass
    );

    let mut obs = healthy();
    obs.ways_in.schedulers[0].deny = Some("bob\n".into());
    let probe = only(&obs, "cron-denied", Status::Fail);
    assert!(
        probe.detail.contains("cron (/etc/cron.deny"),
        "{}",
        probe.detail
    );
    // An allow list that leaves the agent out denies it whatever the deny list says.
    obs.ways_in.schedulers[0].allow = Some("root\n".into());
    let schedulers = &obs.ways_in.schedulers;
    assert_eq!(cron_denied("cc-agent", schedulers).status, Status::Pass);
    obs.ways_in.schedulers[1].installed = true;
    only(&obs, "cron-denied", Status::Fail);

    let mut obs = healthy();
    obs.ways_in.dbus.found = None;
    only(&obs, "dbus-policy", Status::Fail);
    obs.ways_in.dbus.found = Some("<policy user=\"ai-agent\">".into());
    let probe = only(&obs, "dbus-policy", Status::Fail);
    assert!(
        probe.detail.contains("configured agent"),
        "{}",
        probe.detail
    );
}
