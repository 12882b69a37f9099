//! Validation at save time: a source that does not compile is refused with its line and column,
//! and a module keeps to the module shape (only `fn`, literal `const` and `import` at its top).

use picloud_core::exec::{ExecErrorKind, Import, ValidatedScript};
use picloud_core::{Limits, ScriptKind};
use picloud_executor::Sandbox;

fn sandbox() -> Sandbox {
    Sandbox::new(Limits::default(), 16, 16)
}

fn names(valid: &ValidatedScript) -> Vec<String> {
    valid.imports.iter().map(|i| i.name.clone()).collect()
}

// #17: what a script imports is recorded with it, so the save learns it from the source: each
// module once, where it is first imported, in functions too; a computed name is refused.
#[test]
fn the_imports_of_a_script_are_listed_once_each_with_where_they_are_first_imported() {
    let source = "import \"util\" as u;\nfn f() { import \"fmt\" as f; import \"util\" as again; f::x() }\nu::y()";
    let valid = sandbox()
        .validate(source, ScriptKind::Endpoint)
        .expect("a valid endpoint");
    assert_eq!(
        valid.imports,
        vec![
            Import {
                name: "util".to_owned(),
                line: Some(1),
                column: Some(1),
            },
            Import {
                name: "fmt".to_owned(),
                line: Some(2),
                column: Some(10),
            },
        ],
        "util once (its first import) and fmt, with their positions"
    );
    let err = sandbox()
        .validate(
            "let name = \"ut\" + ctx.request.path;\nimport name as u;\nu::y()",
            ScriptKind::Endpoint,
        )
        .expect_err("a computed module name");
    assert_eq!(
        (err.kind, err.line, err.column),
        (ExecErrorKind::Compile, Some(2), Some(1)),
        "refused where it imports: {err:?}"
    );
    assert!(
        err.message
            .contains("an import must name its module with a literal string"),
        "{}",
        err.message
    );
}

#[test]
fn a_source_that_compiles_is_valid_as_an_endpoint() {
    let source = "let name = ctx.request.params.name;\nif name == () { response(400, \"no name\") } else { `hi ${name}` }";
    assert_eq!(
        sandbox().validate(source, ScriptKind::Endpoint),
        Ok(ValidatedScript::default()),
        "it compiles, and imports nothing"
    );
}

#[test]
fn a_syntax_error_is_refused_with_its_line_and_column() {
    let err = sandbox()
        .validate("let a = 1;\nlet b = (a + ;\n", ScriptKind::Endpoint)
        .expect_err("the source does not compile");
    assert_eq!(
        err.kind,
        ExecErrorKind::Compile,
        "it is a compile error: {err:?}"
    );
    assert_eq!(
        (err.line, err.column),
        (Some(2), Some(14)),
        "it points at the gap: {err:?}"
    );
    assert!(!err.message.is_empty(), "it says what is wrong");
}

#[test]
fn eval_is_refused_at_validation() {
    let err = sandbox()
        .validate("let x = eval(\"1\");", ScriptKind::Endpoint)
        .expect_err("eval is disabled");
    assert_eq!(
        (err.kind, err.line),
        (ExecErrorKind::Compile, Some(1)),
        "{err:?}"
    );
}

#[test]
fn an_expression_nested_past_the_limit_is_refused_at_validation_naming_the_limit() {
    let source = format!("let x = {}1{};", "(".repeat(100), ")".repeat(100));
    let err = sandbox()
        .validate(&source, ScriptKind::Endpoint)
        .expect_err("the expression is too deep");
    assert_eq!(
        err.kind,
        ExecErrorKind::Compile,
        "validation refuses with kind compile: {err:?}"
    );
    assert!(
        err.message.contains("limit of 64 levels"),
        "the limit is named: {err:?}"
    );
}

#[test]
fn a_module_of_functions_constants_and_imports_is_valid() {
    let source = r#"
        import "helpers" as h;
        const GREETING = "hello";
        export const LIMITS = #{ max: 10, names: ["a", "b"] };
        const NEG = -1;
        // functions live in the AST's library, not its statements
        fn greet(name) { `${global::GREETING} ${name}` }
        fn double(x) { let y = x * 2; y }
    "#;
    assert_eq!(
        sandbox()
            .validate(source, ScriptKind::Module)
            .map(|valid| names(&valid)),
        Ok(vec!["helpers".to_owned()]),
        "a module of declarations, which imports helpers"
    );
}

#[test]
fn a_module_with_top_level_code_is_refused_naming_the_line() {
    for (source, line, needle) in [
        (
            "fn f() { 1 }\nlet x = 1;",
            2,
            "cannot declare the variable 'x'",
        ),
        (
            "const A = 1;\nconst B = time::now();",
            2,
            "'B' must have a literal value",
        ),
        (
            "fn f() { 1 }\n\nf();",
            3,
            "a module may only contain `fn` definitions",
        ),
        (
            "const A = 1;\nif A == 1 { print(1); }",
            2,
            "a module may only contain",
        ),
        ("let name = \"x\";\nimport name as n;", 1, "cannot declare"),
        (
            "fn f() { \"x\" }\nimport f() as n;",
            2,
            "named by a literal string",
        ),
    ] {
        let err = sandbox()
            .validate(source, ScriptKind::Module)
            .expect_err(&format!(
                "top-level code is refused in a module: `{source}`"
            ));
        assert_eq!(err.kind, ExecErrorKind::Compile, "`{source}`: {err:?}");
        assert_eq!(
            err.line,
            Some(line),
            "`{source}` names line {line}: {err:?}"
        );
        assert!(
            err.message.starts_with(&format!("line {line}: ")) && err.message.contains(needle),
            "`{source}`: the message '{}' names the line and contains '{needle}'",
            err.message
        );
    }
}

#[test]
fn the_same_top_level_code_is_fine_in_an_endpoint() {
    assert_eq!(
        sandbox().validate("let x = 1;\nx + 1", ScriptKind::Endpoint),
        Ok(ValidatedScript::default()),
        "endpoints are top-level code"
    );
}

// #17: a typo'd SDK call is refused when the script is saved, where it is, with the closest
// name; calls of imported modules and correct SDK calls pass.
#[test]
fn namespaced_calls_must_name_a_function_of_the_sdk_or_an_imported_module() {
    for (source, message, line, column) in [
        (
            "let users = kv::colection(\"users\");",
            "line 1: kv::colection is not a function of kv; did you mean kv::collection?",
            1,
            17,
        ),
        (
            "fn read(text) {\n    json::parze(text)\n}\nread(\"{}\")",
            "line 2: json::parze is not a function of json; did you mean json::parse?",
            2,
            11,
        ),
        (
            "random::int(5)",
            "line 1: random::int takes 2 arguments, not 1",
            1,
            9,
        ),
        (
            "kvv::collection(\"a\")",
            "line 1: 'kvv' is not a namespace of the SDK nor a module this script imports; did you mean kv?",
            1,
            6,
        ),
    ] {
        let err = sandbox()
            .validate(source, ScriptKind::Endpoint)
            .expect_err(source);
        assert_eq!(err.kind, ExecErrorKind::Compile, "{source}");
        assert_eq!(err.message, message, "{source}");
        assert_eq!((err.line, err.column), (Some(line), Some(column)), "{source}");
    }
    for source in [
        "import \"util\" as u; u::anything(1, 2, 3)",
        "let c = kv::collection(\"c\"); c.get(\"k\"); log::debug(time::now()); docs::collection(\"d\")",
        "regex::replace_all(\"a\", \"b\", \"c\")",
    ] {
        assert!(
            sandbox().validate(source, ScriptKind::Endpoint).is_ok(),
            "{source}"
        );
    }
}
