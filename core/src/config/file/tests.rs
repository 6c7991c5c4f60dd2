//! The file syntax, merging and duplicates.

use super::*;
use crate::config::tests::{node_err, pairs};
use crate::config::{DaemonConfig, IndexConfig, IndexServer, NodeConfig};

#[test]
fn comments_blank_lines_sections_and_line_endings() {
    let text = "\u{feff}# a comment\r\n\r\n[flared]\r\n  data-dir=/d   # trailing comment\r\nindex-servers =i:1#x\n\
                \tmax-connection\t=\t7\t\n#daemonize\n";
    let entries = parse_file(text, "f").unwrap();
    let names: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("data-dir", Some("/d")),
            ("index-servers", Some("i:1")),
            ("max-connection", Some("7"))
        ]
    );
    assert_eq!(entries[2].location.line(), Some(6));
    let (c, _) = NodeConfig::from_entries(&entries).unwrap();
    assert_eq!(c.max_connection, 7);
    assert!(!c.daemonize, "a commented-out switch is off");
}

#[test]
fn syntax_errors_name_the_line() {
    assert_eq!(
        parse_file("data-dir = /d\n[section\n", "x.conf")
            .unwrap_err()
            .to_string(),
        "x.conf:2: syntax error: unterminated section header '[section'"
    );
    assert_eq!(
        parse_file("= 3\n", "x.conf").unwrap_err().to_string(),
        "x.conf:1: syntax error: missing option name before '='"
    );
}

#[test]
fn unknown_options_are_rejected_with_their_name() {
    assert_eq!(
        node_err("data-dir = /d\n\n# x\nfoo = 1\n"),
        "flared.conf:4: unknown option 'foo'"
    );
    assert_eq!(
        node_err("Data-Dir = /d\n"),
        "flared.conf:1: unknown option 'Data-Dir'"
    );
    let err = IndexConfig::from_pairs(&pairs(&[("data-dir", "/d"), ("nope", "1")])).unwrap_err();
    assert_eq!(err.to_string(), "unknown option 'nope'");
    assert_eq!(err.option_name(), Some("nope"));
}

#[test]
fn duplicates_are_rejected() {
    let err = parse_file(
        "data-dir = /a\nmax-connection = 1\ndata-dir = /b\n",
        "f.conf",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.conf:3: option 'data-dir' given twice (first at f.conf:1)"
    );
    let err = parse_file("gat-flare-syntax = true\ngat-compat = flare\n", "f.conf").unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.conf:2: option 'gat-compat' cannot be combined with 'gat-flare-syntax'"
    );
    let err =
        NodeConfig::from_pairs(&pairs(&[("data-dir", "/a"), ("data-dir", "/b")])).unwrap_err();
    assert!(matches!(err, ConfigError::Duplicate { .. }), "{err}");
}

#[test]
fn command_line_index_server_form_replaces_the_files() {
    let file = parse_file(
        "data-dir = /d\nindex-server-name = old\nindex-server-port = 1\n",
        "f",
    )
    .unwrap();
    let cli = vec![Entry::new("index-servers", "new:2", Location::CommandLine)];
    let (c, _) = NodeConfig::from_entries(&merge(&file, &cli)).unwrap();
    assert_eq!(
        c.index_servers,
        vec![IndexServer {
            name: "new".into(),
            port: 2
        }]
    );

    let file = parse_file("data-dir = /d\nindex-servers = old:1\n", "f").unwrap();
    let cli = vec![Entry::new(
        "index-server-name",
        "new",
        Location::CommandLine,
    )];
    let (c, _) = NodeConfig::from_entries(&merge(&file, &cli)).unwrap();
    assert_eq!(
        c.index_servers,
        vec![IndexServer {
            name: "new".into(),
            port: 12120
        }]
    );

    let file = parse_file("data-dir = /d\nindex-server-name = keep\n", "f").unwrap();
    let cli = vec![Entry::new("index-server-port", "7", Location::CommandLine)];
    let (c, _) = NodeConfig::from_entries(&merge(&file, &cli)).unwrap();
    assert_eq!(
        c.index_servers,
        vec![IndexServer {
            name: "keep".into(),
            port: 7
        }]
    );
}

#[test]
fn merge_replaces_same_option_and_alias() {
    let file = parse_file(
        "data-dir = /d\nmax-connection = 5\ngat-flare-syntax = true\n",
        "f",
    )
    .unwrap();
    let cli = vec![
        Entry::new("max-connection", "9", Location::CommandLine),
        Entry::new("gat-compat", "memcached", Location::CommandLine),
        Entry::new("index-servers", "i:1", Location::CommandLine),
    ];
    let merged = merge(&file, &cli);
    assert_eq!(merged.len(), 4);
    let (c, _) = NodeConfig::from_entries(&merged).unwrap();
    assert_eq!(c.max_connection, 9);
    assert!(!c.gat_flare_syntax);
    let err = NodeConfig::from_entries(&merge(
        &cli,
        &[Entry::new("max-connection", "x", Location::CommandLine)],
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "command line: option 'max-connection': invalid value 'x' (expected an integer)"
    );
}
