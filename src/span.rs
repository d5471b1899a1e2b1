//! Source locations for located error messages (`file:line:col` and a caret).

use std::fmt;
use std::sync::Arc;

/// A location in a source file. `line` and `col` are 1-based; `col` counts characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Span {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
    /// Length of the offending text in characters (at least 1 when rendered).
    pub len: usize,
    /// The whole source line, for the caret display.
    pub line_text: Arc<str>,
}

impl Span {
    pub fn new(file: Arc<str>, line: usize, col: usize, len: usize, line_text: Arc<str>) -> Span {
        Span {
            file,
            line,
            col,
            len,
            line_text,
        }
    }

    /// Render `file:line:col: message` followed by the source line and a caret under the text.
    pub fn render(&self, message: &str) -> String {
        let mut s = format!("{}:{}:{}: {}", self.file, self.line, self.col, message);
        if !self.line_text.is_empty() {
            let gutter = format!("{}", self.line);
            s.push_str(&format!("\n {} | {}", gutter, self.line_text.trim_end()));
            let pad: String = self
                .line_text
                .chars()
                .take(self.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            s.push_str(&format!(
                "\n {} | {}{}",
                " ".repeat(gutter.len()),
                pad,
                "^".repeat(self.len.max(1))
            ));
        }
        s
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}
