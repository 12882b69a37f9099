//! What a script must be beyond compiling, checked when it is saved: namespaced calls name a
//! function of the SDK or an imported module ([`check_calls`]), imports name their module with
//! a literal ([`imports`]), and a module keeps to its shape.
//!
//! The shape rule for module scripts. A module is compiled once and shared by every script that
//! imports it, so its top level may only declare things: `fn` definitions, `const` with literal
//! values (a `const` computed from a store call would freeze one caller's data into the shared
//! module), and `import` of a literal name. Functions live in the AST's function library, not in
//! its statements, so only these statements are checked.

use std::collections::HashSet;

use rhai::{ASTFlags, ASTNode, Expr, Position, Stmt, AST};

use crate::catalogue::Catalogue;

/// Where and why a module's top level breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeError {
    pub message: String,
    pub position: Position,
}

pub(crate) fn check_module(ast: &AST) -> Result<(), ShapeError> {
    ast.statements().iter().try_for_each(check_statement)
}

fn check_statement(stmt: &Stmt) -> Result<(), ShapeError> {
    match stmt {
        Stmt::Noop(_) => Ok(()),
        Stmt::Var(declaration, flags, position) => {
            let (name, value, _) = declaration.as_ref();
            if !flags.contains(ASTFlags::CONSTANT) {
                return Err(error(
                    format!(
                        "a module cannot declare the variable '{}' at its top level: use `const`, \
                         or move it into a function",
                        name.name
                    ),
                    *position,
                ));
            }
            if !value.is_constant() {
                return Err(error(
                    format!(
                        "the module constant '{}' must have a literal value (a number, string, \
                         bool, or an array or map of them)",
                        name.name
                    ),
                    *position,
                ));
            }
            Ok(())
        }
        Stmt::Import(import, position) => match &import.0 {
            Expr::StringConstant(..) => Ok(()),
            _ => Err(error(
                "a module can only import a module named by a literal string".to_string(),
                *position,
            )),
        },
        other => Err(error(
            "a module may only contain `fn` definitions, `const` declarations with literal values \
             and `import` statements at its top level"
                .to_string(),
            other.position(),
        )),
    }
}

/// Every namespaced call of the script (`kv::collection(…)`, in functions too) is to a function of
/// the SDK with that many arguments, or to a module the script imports (`import "m" as m;`):
/// a typo is refused when the script is saved, with the closest name, instead of failing on the
/// request that reaches it.
pub(crate) fn check_calls(ast: &AST, catalogue: &Catalogue) -> Result<(), ShapeError> {
    let mut aliases: HashSet<String> = HashSet::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(import, _))) = path.last() {
            aliases.insert(import.1.name.to_string());
        }
        true
    });
    let mut refused = None;
    ast.walk(&mut |path: &[ASTNode]| {
        // A call is an expression, or a statement of its own.
        let (call, position) = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position))) => (call, position),
            Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => (call, position),
            _ => return true,
        };
        if call.namespace.is_empty() {
            return true;
        }
        let root = call.namespace.root();
        if root == "global" || aliases.contains(root) {
            return true;
        }
        let checked = if catalogue.has_namespace(root) {
            catalogue.check_call(root, &call.name, call.args.len())
        } else {
            Err(catalogue.unknown_namespace(root))
        };
        match checked {
            Ok(()) => true,
            Err(message) => {
                refused = Some(error(message, *position));
                false
            }
        }
    });
    refused.map_or(Ok(()), Err)
}

/// The modules the script imports (in functions too), each with its first `import`, in the order
/// they appear. An import must name its module with a literal string: which modules a script
/// depends on is known when it is saved (and recorded), not when a request computes a name.
pub(crate) fn imports(ast: &AST) -> Result<Vec<(String, Position)>, ShapeError> {
    let mut found: Vec<(String, Position)> = Vec::new();
    let mut refused = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Stmt(Stmt::Import(import, position))) = path.last() else {
            return true;
        };
        match &import.0 {
            Expr::StringConstant(name, _) => {
                if !found.iter().any(|(seen, _)| seen == name.as_str()) {
                    found.push((name.to_string(), *position));
                }
                true
            }
            _ => {
                refused = Some(error(
                    "an import must name its module with a literal string:                      `import \"name\" as alias;`"
                        .to_string(),
                    *position,
                ));
                false
            }
        }
    });
    refused.map_or(Ok(found), Err)
}

fn error(message: String, position: Position) -> ShapeError {
    ShapeError { message, position }
}
