//! The standard library namespaces, each on its happy and its unhappy paths. Every failure is a
//! runtime error whose message starts with the function's name.

use picloud_core::exec::ExecErrorKind;
use picloud_test_support::executor::{assert_error, Harness, Via};
use picloud_test_support::for_both_clients;
use serde_json::json;

for_both_clients!(
    regex_matches_finds_replaces_splits_and_captures,
    regex_refuses_an_invalid_or_huge_pattern,
    regex_results_are_bounded_by_the_array_limit,
    random_values_stay_within_their_bounds,
    random_refuses_bad_bounds,
    time_reads_formats_and_parses_rfc3339,
    time_refuses_what_it_cannot_read_or_show,
    json_parses_and_stringifies,
    json_parse_errors_say_where,
    json_stringify_refuses_values_without_json_form,
    base64_and_hex_round_trip_text,
    decoding_refuses_invalid_input_and_non_utf8_bytes,
    url_encodes_decodes_and_handles_query_strings,
    url_refuses_what_it_cannot_decode_or_build,
    sdk_calls_are_not_folded_into_constants,
);

async fn regex_matches_finds_replaces_splits_and_captures(via: Via) {
    let h = Harness::start(via).await;
    let value = h
        .json(
            r#"
            let text = "order 12 and 345, date 2024-05-01";
            #{
                is_match: regex::is_match("\\d+", text),
                no_match: regex::is_match("^\\d+$", text),
                find: regex::find("\\d+", text),
                find_none: regex::find("xyz", text),
                find_all: regex::find_all("\\d+", text),
                replace: regex::replace("\\d+", text, "N"),
                replace_all: regex::replace_all("(\\d+)", text, "<$1>"),
                split: regex::split("\\s*,\\s*", "a , b,c"),
                captures: regex::captures("(?<year>\\d{4})-(\\d{2})-(\\d{2})", text),
                no_captures: regex::captures("(\\d{4})x", text),
            }
            "#,
        )
        .await;
    assert_eq!(
        value,
        json!({
            "is_match": true,
            "no_match": false,
            "find": "12",
            "find_none": null,
            "find_all": ["12", "345", "2024", "05", "01"],
            "replace": "order N and 345, date 2024-05-01",
            "replace_all": "order <12> and <345>, date <2024>-<05>-<01>",
            "split": ["a", "b", "c"],
            "captures": {"0": "2024-05-01", "1": "2024", "year": "2024", "2": "05", "3": "01"},
            "no_captures": null,
        }),
        "each regex function answers as documented"
    );
}

async fn regex_refuses_an_invalid_or_huge_pattern(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("regex::is_match(\"(unclosed\", \"x\")").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "regex::is_match: '(unclosed' is not a valid pattern",
    );
    let err = h.error("regex::find(\"\\\\w{1000}{1000}\", \"x\")").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "regex::find: the pattern is too large",
    );
    h.still_works().await;
}

async fn regex_results_are_bounded_by_the_array_limit(via: Via) {
    let h = Harness::with_limits(
        via,
        picloud_core::Limits {
            max_array_size: 100,
            ..picloud_core::Limits::default()
        },
    )
    .await;
    let text = "a,".repeat(500);
    let err = h.error(&format!("regex::split(\",\", \"{text}\")")).await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "regex::split: more than 100 parts",
    );
    let err = h
        .error(&format!("regex::find_all(\"a\", \"{text}\")"))
        .await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "regex::find_all: more than 100 matches",
    );
}

async fn random_values_stay_within_their_bounds(via: Via) {
    let h = Harness::start(via).await;
    let value = h
        .json(
            r#"
            let ok = true;
            for i in 0..200 {
                let n = random::int(-3, 3);
                if n < -3 || n > 3 { ok = false; }
                let f = random::float();
                if f < 0.0 || f >= 1.0 { ok = false; }
            }
            #{
                ok: ok,
                same: random::int(5, 5),
                bool_type: type_of(random::bool()),
                uuid: random::uuid(),
                string: random::string(16),
                empty: random::string(0),
            }
            "#,
        )
        .await;
    assert_eq!(
        value["ok"],
        json!(true),
        "ints and floats stay within bounds"
    );
    assert_eq!(value["same"], json!(5), "int(lo, hi) includes both bounds");
    assert_eq!(value["bool_type"], json!("bool"), "bool() is a bool");
    let uuid = value["uuid"].as_str().expect("uuid() is a string");
    assert!(
        uuid::Uuid::parse_str(uuid).is_ok(),
        "uuid() is a uuid: {uuid}"
    );
    let string = value["string"].as_str().expect("string() is a string");
    assert!(
        string.len() == 16 && string.chars().all(|c| c.is_ascii_alphanumeric()),
        "string(16) is 16 letters and digits: {string}"
    );
    assert_eq!(value["empty"], json!(""), "string(0) is empty");
}

async fn random_refuses_bad_bounds(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("random::int(5, 1)").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "random::int: the low bound 5 is above the high bound 1",
    );
    let err = h.error("random::string(-1)").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "random::string: the length must be from 0 to",
    );
    let err = h.error("random::string(100000000)").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "random::string: the length must be from 0 to",
    );
}

async fn time_reads_formats_and_parses_rfc3339(via: Via) {
    let h = Harness::start(via).await;
    let before = chrono::Utc::now().timestamp_millis();
    let value = h
        .json(
            r#"
            #{
                now: time::now(),
                now_secs: time::now_secs(),
                format: time::format(1700000000123),
                parse: time::parse("2023-11-14T22:13:20.123Z"),
                parse_offset: time::parse("2023-11-14T23:13:20+01:00"),
                round_trip: time::parse(time::format(86400000)),
            }
            "#,
        )
        .await;
    let after = chrono::Utc::now().timestamp_millis();
    let now = value["now"].as_i64().expect("now() is an integer");
    assert!(
        (before..=after).contains(&now),
        "now() is the current time in ms"
    );
    let now_secs = value["now_secs"]
        .as_i64()
        .expect("now_secs() is an integer");
    assert!(
        (before / 1000..=after / 1000).contains(&now_secs),
        "now_secs() is in seconds"
    );
    assert_eq!(
        value["format"],
        json!("2023-11-14T22:13:20.123Z"),
        "format() is RFC 3339"
    );
    assert_eq!(
        value["parse"],
        json!(1_700_000_000_123_i64),
        "parse() gives ms"
    );
    assert_eq!(
        value["parse_offset"],
        json!(1_700_000_000_000_i64),
        "offsets are honoured"
    );
    assert_eq!(
        value["round_trip"],
        json!(86_400_000),
        "format and parse agree"
    );
}

async fn time_refuses_what_it_cannot_read_or_show(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("time::parse(\"yesterday\")").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "time::parse: 'yesterday' is not an RFC 3339 time",
    );
    let err = h.error("time::format(9223372036854775807)").await;
    assert_error(&err, ExecErrorKind::Runtime, "time::format:");
}

async fn json_parses_and_stringifies(via: Via) {
    let h = Harness::start(via).await;
    let value = h
        .json(
            r#"
            let v = json::parse("{\"a\": [1, 2.5, true, null, \"x\"], \"b\": {\"c\": -3}}");
            #{
                parsed: v,
                a_len: v.a.len(),
                null_is_unit: v.a[3] == (),
                text: json::stringify(#{ k: [1, "two", ()] }),
                pretty: json::stringify_pretty(#{ k: 1 }),
                scalar: json::parse("42"),
            }
            "#,
        )
        .await;
    assert_eq!(
        value,
        json!({
            "parsed": {"a": [1, 2.5, true, null, "x"], "b": {"c": -3}},
            "a_len": 5,
            "null_is_unit": true,
            "text": "{\"k\":[1,\"two\",null]}",
            "pretty": "{\n  \"k\": 1\n}",
            "scalar": 42,
        }),
        "JSON text and script values convert both ways"
    );
}

async fn json_parse_errors_say_where(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("json::parse(\"{\\\"a\\\": }\")").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "json::parse: the text is not valid JSON: expected value at line 1 column 7",
    );
    let deep = "[".repeat(500);
    let err = h.error(&format!("json::parse(\"{deep}\")")).await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "json::parse: the text is not valid JSON",
    );
}

async fn json_stringify_refuses_values_without_json_form(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("json::stringify(#{ when: timestamp() })").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "json::stringify: the value at $.when is a timestamp, which has no JSON form",
    );
    let err = h.error("json::stringify_pretty(Fn(\"f\"))").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "a function pointer (Fn) has no JSON form",
    );
}

async fn base64_and_hex_round_trip_text(via: Via) {
    let h = Harness::start(via).await;
    let value = h
        .json(
            r#"
            #{
                b64: base64::encode("héllo?>"),
                b64_back: base64::decode(base64::encode("héllo?>")),
                b64_unpadded: base64::decode("aGk"),
                url: base64::encode_url("héllo?>"),
                url_back: base64::decode_url(base64::encode_url("héllo?>")),
                hex: hex::encode("hi!"),
                hex_back: hex::decode("686921"),
                hex_upper: hex::decode("48494A"),
            }
            "#,
        )
        .await;
    assert_eq!(
        value,
        json!({
            "b64": "aMOpbGxvPz4=",
            "b64_back": "héllo?>",
            "b64_unpadded": "hi",
            "url": "aMOpbGxvPz4",
            "url_back": "héllo?>",
            "hex": "686921",
            "hex_back": "hi!",
            "hex_upper": "HIJ",
        }),
        "encodings round-trip UTF-8 text"
    );
}

async fn decoding_refuses_invalid_input_and_non_utf8_bytes(via: Via) {
    let h = Harness::start(via).await;
    for (source, needle) in [
        (
            "base64::decode(\"***\")",
            "base64::decode: the text is not valid base64",
        ),
        (
            "base64::decode(\"/w==\")",
            "base64::decode: the decoded bytes are not UTF-8 text",
        ),
        (
            "base64::decode_url(\"a+b/\")",
            "base64::decode_url: the text is not valid URL-safe base64",
        ),
        (
            "base64::decode_url(\"_w\")",
            "base64::decode_url: the decoded bytes are not UTF-8 text",
        ),
        (
            "hex::decode(\"abc\")",
            "hex::decode: the text is not valid hex",
        ),
        (
            "hex::decode(\"zz\")",
            "hex::decode: the text is not valid hex",
        ),
        (
            "hex::decode(\"ff\")",
            "hex::decode: the decoded bytes are not UTF-8 text",
        ),
    ] {
        let err = h.error(source).await;
        assert_error(&err, ExecErrorKind::Runtime, needle);
    }
}

async fn url_encodes_decodes_and_handles_query_strings(via: Via) {
    let h = Harness::start(via).await;
    let value = h
        .json(
            r#"
            #{
                encode: url::encode("a b/c?d=é&e~"),
                decode: url::decode("a%20b%2Fc%3F%C3%A9+"),
                query: url::parse_query("?q=rust+lang&page=2&q=last&empty="),
                built: url::build_query(#{ q: "a b&c", page: 2, tags: ["x", "y"], skip: () }),
            }
            "#,
        )
        .await;
    assert_eq!(
        value,
        json!({
            "encode": "a%20b%2Fc%3Fd%3D%C3%A9%26e~",
            "decode": "a b/c?é+",
            "query": {"q": "last", "page": "2", "empty": ""},
            "built": "page=2&q=a%20b%26c&tags=x&tags=y",
        }),
        "URL components and query strings convert as documented"
    );
}

async fn url_refuses_what_it_cannot_decode_or_build(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("url::decode(\"%FF\")").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "url::decode: the decoded bytes are not UTF-8 text",
    );
    let err = h.error("url::build_query(#{ a: #{ b: 1 } })").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "url::build_query: the value of 'a' is a map",
    );
}

async fn sdk_calls_are_not_folded_into_constants(via: Via) {
    // Functions registered as pure and non-volatile may be evaluated once at compile time; the
    // SDK's are volatile, so a cached script still gets a fresh value on every run.
    let h = Harness::start(via).await;
    let script = picloud_test_support::executor::script("random::uuid()");
    let first = picloud_test_support::executor::ok(
        h.run_script(script.clone(), picloud_test_support::executor::get("/"))
            .await,
    );
    let second = picloud_test_support::executor::ok(
        h.run_script(script, picloud_test_support::executor::get("/"))
            .await,
    );
    assert_ne!(
        first.body, second.body,
        "two runs of one script get two uuids"
    );
}
