//! The SPICE-dialect front end: netlist text → elaborated flat [`Netlist`].
//!
//! Parsing runs in explicit phases:
//! 1. [`lines`]: physical lines → logical lines (title, `*` comments, `;`/`$ ` inline comments,
//!    `+` continuations), keeping a map back to physical (file, line, column);
//! 2. [`parse`]: one logical line → one statement (pest grammar `grammar/spice.pest`);
//! 3. [`include`]: `.include` / `.lib file section` resolved relative to the including file,
//!    `.control` blocks skipped, `.end` honoured, cycles reported;
//! 4. [`elab`]: `.subckt` definitions (nested definitions allowed, lexically scoped);
//! 5. parameters: `.param`, subcircuit defaults overridden by instance values, `{…}` and `'…'`
//!    expressions, bare parameter names in B-source expressions;
//! 6. elaboration: instances flattened with hierarchical names (`x1.x2.mid`, `x1.r1`).
//!
//! The dialect is described in docs/spice-dialect.md; the decisions
//! the description leaves open are listed in the module documentation of [`elab`] and [`write`].

pub mod elab;
pub mod include;
pub mod lines;
pub mod number;
pub mod parse;
pub mod write;

use std::path::Path;

use thiserror::Error;

use crate::netlist::Netlist;
use crate::span::Span;

pub use write::write_netlist;

/// Errors of the SPICE front end. `Display` renders `file:line:col: message`, the source line and a
/// caret under the offending text.
#[derive(Debug, Clone, Error)]
pub enum SpiceError {
    #[error("{}", .span.render(&format!("syntax error: {msg}")))]
    Syntax { msg: String, span: Span },
    #[error("{}", .span.render(&format!("bad number `{text}`")))]
    BadNumber { text: String, span: Span },
    #[error("{}", .span.render(&format!("bad value: {msg}")))]
    BadValue { msg: String, span: Span },
    #[error("{}", .span.render(&format!("unknown model `{name}`")))]
    UnknownModel { name: String, span: Span },
    #[error("{}", .span.render(&format!("unknown subcircuit `{name}`")))]
    UnknownSubckt { name: String, span: Span },
    #[error("{}", .span.render(&format!("unknown parameter `{name}`")))]
    UnknownParam { name: String, span: Span },
    #[error("{}", .span.render(&format!("parameter `{name}` depends on itself")))]
    ParamCycle { name: String, span: Span },
    #[error("{}", .span.render(&format!("unknown function `{name}`")))]
    UnknownFunction { name: String, span: Span },
    #[error("{}", .span.render(&format!("`{func}` takes {expected} argument(s), found {found}")))]
    BadArity {
        func: String,
        expected: usize,
        found: usize,
        span: Span,
    },
    /// A reference (`I(name)`, F/H control, `.dc` sweep) to a source that does not exist or has the
    /// wrong kind; `expected` says what was needed (e.g. "voltage source").
    #[error("{}", .span.render(&format!("no {expected} named `{name}`")))]
    UnknownSource {
        name: String,
        expected: String,
        span: Span,
    },
    #[error("{}", .span.render(&format!("wrong pin count for `{name}`: expected {expected}, found {found}")))]
    PinCount {
        name: String,
        expected: usize,
        found: usize,
        span: Span,
    },
    #[error("{}", .span.render(&format!("duplicate name `{name}` (first defined at {first})")))]
    Duplicate {
        name: String,
        first: Box<Span>,
        span: Span,
    },
    #[error("{}", .span.render(&format!("unknown directive `{name}`")))]
    UnknownDirective { name: String, span: Span },
    #[error("{}", .span.render(&format!("cannot read include file `{path}`: {reason}")))]
    IncludeNotFound {
        path: String,
        reason: String,
        span: Span,
    },
    #[error("{}", .span.render(&format!("include cycle: `{path}` includes itself")))]
    IncludeCycle { path: String, span: Span },
    #[error("{}", .span.render(&format!("no section `{section}` in library `{path}`")))]
    LibSectionNotFound {
        section: String,
        path: String,
        span: Span,
    },
    #[error("{}", .span.render(&format!("subcircuit recursion: {chain}")))]
    SubcktRecursion { chain: String, span: Span },
    #[error("{}", .span.render(&format!("`.subckt {name}` has no matching `.ends`")))]
    MissingEnds { name: String, span: Span },
    #[error("{}", .span.render(&format!("unsupported: {what}")))]
    Unsupported { what: String, span: Span },
    /// A size or depth limit (include chain, instance count, memory budget) at a source line.
    #[error("{}", .span.render(&format!("too large: {what}")))]
    TooLarge { what: String, span: Span },
    /// The main file cannot be read (there is no source line to point at).
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
}

impl SpiceError {
    /// The location of the error, if it has one.
    pub fn span(&self) -> Option<&Span> {
        use SpiceError::*;
        match self {
            Syntax { span, .. }
            | BadNumber { span, .. }
            | BadValue { span, .. }
            | UnknownModel { span, .. }
            | UnknownSubckt { span, .. }
            | UnknownParam { span, .. }
            | ParamCycle { span, .. }
            | UnknownFunction { span, .. }
            | BadArity { span, .. }
            | UnknownSource { span, .. }
            | PinCount { span, .. }
            | Duplicate { span, .. }
            | UnknownDirective { span, .. }
            | IncludeNotFound { span, .. }
            | IncludeCycle { span, .. }
            | LibSectionNotFound { span, .. }
            | SubcktRecursion { span, .. }
            | MissingEnds { span, .. }
            | Unsupported { span, .. }
            | TooLarge { span, .. } => Some(span),
            Io { .. } => None,
        }
    }
}

/// Read and elaborate a netlist file. `.include` paths are relative to the including file.
pub fn parse_file(path: &Path) -> Result<Netlist, SpiceError> {
    let bytes = std::fs::read(path).map_err(|e| SpiceError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let text = utf8_text(bytes);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let loaded = include::load_main(&path.display().to_string(), text, &dir, key)?;
    elab::elaborate(loaded)
}

/// File bytes as text: taken as they are when they are UTF-8 (no copy), invalid sequences
/// replaced by U+FFFD otherwise.
pub(crate) fn utf8_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Read a device model card (`models/*.cir`: `.param` and `.model` lines, no title line) with
/// this front end: its number syntax, `.param` expressions and `.model` handling, errors located
/// in the card (`file:line:col`).
pub fn read_card(path: &Path) -> Result<elab::CardContents, SpiceError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpiceError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let loaded = include::load_untitled(&path.display().to_string(), text, &dir, key)?;
    elab::elaborate_card(loaded)
}

/// Elaborate netlist text; `file_name` names it in messages. `.include` paths are relative to the
/// current directory.
pub fn parse_str(src: &str, file_name: &str) -> Result<Netlist, SpiceError> {
    let loaded = include::load_main(
        file_name,
        src.to_string(),
        Path::new(""),
        Path::new(file_name).to_path_buf(),
    )?;
    elab::elaborate(loaded)
}
