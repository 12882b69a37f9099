//! The shape rule for module scripts. A module is compiled once and shared by every script that
//! imports it, so its top level may only declare things: `fn` definitions, `const` with literal
//! values (a `const` computed from a store call would freeze one caller's data into the shared
//! module), and `import` of a literal name. Functions live in the AST's function library, not in
//! its statements, so only these statements are checked.

use rhai::{ASTFlags, Expr, Position, Stmt, AST};

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

fn error(message: String, position: Position) -> ShapeError {
    ShapeError { message, position }
}
