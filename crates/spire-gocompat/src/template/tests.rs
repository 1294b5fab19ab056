//! Unit tests of the template engine and its functions (the differential test against
//! SPIRE's own renderer is tests/gotemplate.rs).

use std::collections::BTreeMap;

use super::*;

fn data() -> Value {
    Value::structure(
        "test.agentPathTemplateData",
        [
            ("PluginName", Value::from("aws_iid")),
            ("Region", Value::from("US-East-1")),
            ("InstanceID", Value::from("i-0123")),
            ("ProjectNumber", Value::Int64(42)),
            (
                "Tags",
                Value::str_map("test.instanceTags", [("Name", "web"), ("env", "Prod")]),
            ),
            (
                "Subject",
                Value::structure("pkix.Name", [("CommonName", Value::from("node-1"))]),
            ),
            (
                "Names",
                Value::StrList(vec!["b".into(), "a".into(), "c".into()]),
            ),
        ],
    )
}

fn run(t: &str) -> Result<String, String> {
    let tmpl = PathTemplate::parse(t)?;
    let mut n = 0u8;
    tmpl.execute(&data(), &mut |b: &mut [u8]| {
        for x in b.iter_mut() {
            *x = n;
            n = n.wrapping_add(1);
        }
    })
}

fn ok(t: &str) -> String {
    run(t).unwrap_or_else(|e| panic!("{t}: {e}"))
}

#[test]
fn fields_pipelines_and_calls() {
    assert_eq!(
        ok("/{{ .PluginName }}/{{ .InstanceID }}"),
        "/aws_iid/i-0123"
    );
    assert_eq!(ok("{{ .Region | lower }}"), "us-east-1");
    assert_eq!(
        ok(r#"{{ .Region | lower | replace "-" "_" }}"#),
        "us_east_1"
    );
    assert_eq!(ok(r#"{{ printf "%s-%d" .InstanceID 7 }}"#), "i-0123-7");
    assert_eq!(
        ok("{{ .Tags.Name }}/{{ .Subject.CommonName }}"),
        "web/node-1"
    );
    assert_eq!(ok(r#"{{ index .Tags "env" | lower }}"#), "prod");
    assert_eq!(ok("{{ (upper .PluginName) }}"), "AWS_IID");
    assert_eq!(ok("{{ $r := .Region }}{{ $r }}"), "US-East-1");
    assert_eq!(ok("{{ .ProjectNumber }}"), "42");
    assert_eq!(ok("a {{- \" b \" -}} c"), "a b c");
    assert_eq!(ok("a {{- /* note */ -}} b"), "ab");
    assert_eq!(ok("{{ len .Names }}"), "3");
    assert_eq!(ok("{{ sortAlpha .Names | join \",\" }}"), "a,b,c");
}

#[test]
fn control_flow() {
    assert_eq!(
        ok(r#"{{ if eq .Region "x" }}x{{ else if .Tags.Name }}t{{ else }}e{{ end }}"#),
        "t"
    );
    assert_eq!(
        ok("{{ with .Subject }}{{ .CommonName }}{{ end }}"),
        "node-1"
    );
    assert_eq!(
        ok("{{ range $i, $n := .Names }}{{ $i }}{{ $n }}{{ end }}"),
        "0b1a2c"
    );
    assert_eq!(
        ok("{{ range .Names }}{{ if eq . \"a\" }}{{ break }}{{ end }}{{ . }}{{ end }}"),
        "b"
    );
    assert_eq!(
        ok("{{ range $k, $v := .Tags }}{{ $k }}={{ $v }};{{ end }}"),
        "Name=web;env=Prod;"
    );
    assert_eq!(ok("{{ range list }}x{{ else }}none{{ end }}"), "none");
    assert_eq!(ok("{{ and 1 0 }}{{ or 0 \"y\" }}{{ not true }}"), "0yfalse");
    assert_eq!(
        ok("{{ lt 1 2 }}{{ ge 1.5 2.5 }}{{ ne \"a\" \"b\" }}"),
        "truefalsetrue"
    );
}

#[test]
fn sprig_functions() {
    assert_eq!(
        ok(r#"{{ trunc 3 "abcdef" }}|{{ trunc -2 "abcdef" }}"#),
        "abc|ef"
    );
    assert_eq!(ok(r#"{{ abbrev 5 "hello world" }}"#), "he...");
    assert_eq!(
        ok(r#"{{ abbrevboth 5 10 "1234 5678 9123" }}"#),
        "...5678..."
    );
    assert_eq!(ok(r#"{{ substr 1 3 "hello" }}"#), "el");
    assert_eq!(
        ok(r#"{{ "hello world" | title }}|{{ untitle "Hello World" }}"#),
        "Hello World|hello world"
    );
    assert_eq!(
        ok(
            r#"{{ snakecase "InstanceID" }}|{{ kebabcase "MyRegion" }}|{{ camelcase "my_region" }}"#
        ),
        "instance_id|my-region|MyRegion"
    );
    assert_eq!(
        ok(
            r#"{{ swapcase "Hello World" }}|{{ initials "hello big world" }}|{{ nospace " a b " }}"#
        ),
        "hELLO wORLD|hbw|ab"
    );
    assert_eq!(ok(r#"{{ wrapWith 5 "\t" "Hello World" }}"#), "Hello\tWorld");
    assert_eq!(
        ok(r#"{{ quote "a" 1 }}|{{ squote "a" }}|{{ cat "a" 1 nil "b" }}"#),
        r#""a" "1"|'a'|a 1 b"#
    );
    assert_eq!(
        ok(r#"{{ sha256sum "x" | trunc 8 }}|{{ adler32sum "x" }}|{{ sha1sum "" }}"#),
        "2d711642|7929977|da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
    assert_eq!(
        ok(r#"{{ seq 3 }}|{{ seq 5 -2 1 }}|{{ seq 2 4 }}"#),
        "1 2 3|5 3 1|2 3 4"
    );
    assert_eq!(
        ok(r#"{{ splitList "-" "a-b-c" | last }}|{{ list 1 2 3 | rest | first }}"#),
        "c|2"
    );
    assert_eq!(
        ok(r#"{{ default "d" "" }}|{{ default "d" "v" }}|{{ coalesce "" 0 "z" }}|{{ empty "" }}"#),
        "d|v|z|true"
    );
    assert_eq!(
        ok(
            r#"{{ ternary "y" "n" true }}|{{ base "/a/b.txt" }}|{{ dir "/a/b" }}|{{ ext "x.tar.gz" }}|{{ clean "a//b/../c" }}"#
        ),
        "y|b.txt|/a|.gz|a/c"
    );
    assert_eq!(
        ok(r#"{{ b64enc "hi" }}|{{ b64dec "aGk=" }}|{{ b32enc "hi" }}|{{ b32dec "NBUQ====" }}"#),
        "aGk=|hi|NBUQ====|hi"
    );
    assert_eq!(
        ok(
            r#"{{ $d := dict "a" 1 "b" (dict "c" "deep") }}{{ dig "b" "c" "none" $d }}|{{ dig "x" "none" $d }}|{{ hasKey $d "a" }}|{{ keys $d | sortAlpha | join "," }}"#
        ),
        "deep|none|true|a,b"
    );
    assert_eq!(
        ok(r#"{{ $d := dict }}{{ $_ := set $d "k" "v" }}{{ get $d "k" }}"#),
        "v"
    );
    assert_eq!(
        ok(
            r#"{{ list 1 2 2 3 | uniq }}|{{ without (list 1 2 3) 2 }}|{{ has 2 (list 1 2) }}|{{ slice (list 1 2 3) 1 }}"#
        ),
        "[1 2 3]|[1 3]|true|[2 3]"
    );
    assert_eq!(
        ok(
            r#"{{ concat (list 1) (list 2 3) }}|{{ chunk 2 (list 1 2 3) }}|{{ reverse (list 1 2) }}|{{ append (list 1) 2 }}|{{ prepend (list 1) 0 }}"#
        ),
        "[1 2 3]|[[1 2] [3]]|[2 1]|[1 2]|[0 1]"
    );
    assert_eq!(
        ok(
            r#"{{ regexReplaceAll "[^a-z0-9]+" (lower .Region) "_" }}|{{ regexFind "[0-9]+" "ab12cd34" }}|{{ regexFindAll "[0-9]" "a1b2c3" 2 }}|{{ regexMatch "^i-" .InstanceID }}|{{ regexSplit "-" "a-b-c" -1 }}"#
        ),
        "us_east_1|12|[1 2]|true|[a b c]"
    );
    assert_eq!(
        ok(
            r#"{{ regexReplaceAll "(a)(b)" "abab" "${2}$1" }}|{{ regexReplaceAllLiteral "a" "aa" "$1" }}|{{ regexQuoteMeta "a.b" }}"#
        ),
        "baba|$1$1|a\\.b"
    );
    assert_eq!(
        ok(
            r#"{{ (urlParse "https://u:p@host:8443/p/a?q=1#f").hostname }}|{{ urlJoin (dict "scheme" "https" "host" "h" "path" "/x y") }}"#
        ),
        "host|https://h/x%20y"
    );
    assert_eq!(ok("{{ uuidv4 }}"), "00010203-0405-4607-8809-0a0b0c0d0e0f");
    assert_eq!(
        ok(
            r#"{{ merge (dict "a" 1) (dict "a" 2 "b" 3) }}|{{ mergeOverwrite (dict "a" 1) (dict "a" 2) }}"#
        ),
        "map[a:1 b:3]|map[a:2]"
    );
    assert_eq!(
        ok(
            r#"{{ pick (dict "a" 1 "b" 2) "a" }}|{{ omit (dict "a" 1 "b" 2) "a" }}|{{ pluck "a" (dict "a" 1) (dict "a" 2) }}"#
        ),
        "map[a:1]|map[b:2]|[1 2]"
    );
    assert_eq!(
        ok(
            r#"{{ toStrings (list 1 "a") }}|{{ compact (list "" 1 0 "x") }}|{{ all 1 "a" }}|{{ any 0 "" }}"#
        ),
        "[1 a]|[1 x]|true|false"
    );
    assert_eq!(
        ok(
            r#"{{ indent 2 "a\nb" }}|{{ plural "one" "many" 2 }}|{{ repeat 2 "ab" }}|{{ trimAll "-" "--a--" }}|{{ trimSuffix ".x" "a.x" }}|{{ trimPrefix "a" "ab" }}"#
        ),
        "  a\n  b|many|abab|a|a|b"
    );
    assert_eq!(
        ok(r#"{{ contains "b" "abc" }}{{ hasPrefix "a" "abc" }}{{ hasSuffix "c" "abc" }}"#),
        "truetruetrue"
    );
}

#[test]
fn errors_are_worded_as_go() {
    assert_eq!(
        run("/{{ .Missing }}").unwrap_err(),
        "template: agent-path:1:4: executing \"agent-path\" at <.Missing>: can't evaluate field Missing in type test.agentPathTemplateData"
    );
    assert_eq!(
        run("/{{ .Tags.Nope }}").unwrap_err(),
        "template: agent-path:1:9: executing \"agent-path\" at <.Tags.Nope>: map has no entry for key \"Nope\""
    );
    assert_eq!(
        run(r#"{{ fail "stop" }}"#).unwrap_err(),
        "template: agent-path:1:3: executing \"agent-path\" at <fail \"stop\">: error calling fail: stop"
    );
    assert_eq!(
        PathTemplate::parse("{{ nosuch }}").unwrap_err(),
        "template: agent-path:1: function \"nosuch\" not defined"
    );
    for bad in [
        "{{ .A",
        "{{ if 1 }}",
        "{{ end }}",
        "{{ $x }}",
        "{{ }}",
        "{{ define \"x\" }}",
    ] {
        assert!(PathTemplate::parse(bad).is_err(), "{bad}");
    }
    for bad in [
        "{{ upper 3 }}",
        "{{ trunc .ProjectNumber \"abc\" }}",
        "{{ index .Names 9 }}",
        "{{ eq 1 \"a\" }}",
        "{{ regexFind \"(\" \"x\" }}",
        "{{ first 3 }}",
        "{{ hasKey .Tags \"Name\" }}",
        "{{ .PluginName.X }}",
    ] {
        assert!(run(bad).is_err(), "{bad}");
    }
}

#[test]
fn maps_are_shared_like_go_maps() {
    let mut m = BTreeMap::new();
    m.insert("k".to_string(), Value::from("v"));
    let data = Value::structure("t.D", [("M", Value::map(m))]);
    let t = PathTemplate::parse(r#"{{ $_ := set .M "n" "w" }}{{ .M.n }}"#).unwrap();
    assert_eq!(t.execute(&data, &mut |_| {}).unwrap(), "w");
}
