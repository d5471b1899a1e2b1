//! Phase 1: physical lines → logical lines.
//!
//! The first line of the main file is the title. `*` lines are comments, `;` and `$ ` (dollar
//! followed by blank or end of line) start inline comments outside `{…}` and quotes, a line starting
//! with `+` continues the previous logical line, blank lines are skipped. Every logical line keeps a
//! map from its byte offsets back to physical (file, line, column) so that later phases can render
//! located errors in the right file.

use std::cell::RefCell;
use std::sync::Arc;

use crate::span::Span;

/// One source file (the main netlist or an included one).
#[derive(Debug)]
pub struct SourceFile {
    /// Name used in messages (the path as given / resolved).
    pub name: Arc<str>,
    pub text: String,
    /// Byte offset of the start of every physical line.
    line_starts: Vec<usize>,
    /// Physical line texts, created on demand for spans and shared between them.
    line_cache: RefCell<Vec<Option<Arc<str>>>>,
}

impl SourceFile {
    pub fn new(name: Arc<str>, text: String) -> SourceFile {
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        // A trailing newline does not start another line.
        if line_starts.len() > 1 && *line_starts.last().unwrap_or(&0) == text.len() {
            line_starts.pop();
        }
        let n = line_starts.len();
        SourceFile {
            name,
            text,
            line_starts,
            line_cache: RefCell::new(vec![None; n]),
        }
    }

    pub fn n_lines(&self) -> usize {
        self.line_starts.len()
    }

    /// Text of physical line `i` (0-based), without the line terminator.
    pub fn line(&self, i: usize) -> &str {
        let Some(&start) = self.line_starts.get(i) else {
            return "";
        };
        let end = self
            .line_starts
            .get(i + 1)
            .map(|&e| e - 1)
            .unwrap_or(self.text.len());
        let s = &self.text[start..end.max(start)];
        let s = s.strip_suffix('\n').unwrap_or(s);
        s.strip_suffix('\r').unwrap_or(s)
    }

    fn line_arc(&self, i: usize) -> Arc<str> {
        let mut cache = self.line_cache.borrow_mut();
        match cache.get_mut(i) {
            Some(slot) => slot.get_or_insert_with(|| Arc::from(self.line(i))).clone(),
            None => Arc::from(""),
        }
    }

    /// Span of `len_bytes` bytes at byte `byte` of physical line `i` (0-based).
    pub fn span_at(&self, i: usize, byte: usize, len_bytes: usize) -> Span {
        let text = self.line(i);
        let byte = floor_char_boundary(text, byte.min(text.len()));
        let end = floor_char_boundary(text, (byte + len_bytes).min(text.len()));
        let col = text[..byte].chars().count() + 1;
        let len = text[byte..end].chars().count().max(1);
        Span::new(self.name.clone(), i + 1, col, len, self.line_arc(i))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where a piece of a logical line comes from.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    /// Byte offset in the logical line where the piece starts.
    pub logical: u32,
    /// Physical line (0-based).
    pub line: u32,
    /// Byte offset in the physical line corresponding to `logical`.
    pub byte: u32,
}

/// A logical line: the joined text (comments removed) and its origin.
#[derive(Debug, Clone)]
pub struct LogicalLine {
    pub text: String,
    pub file: u32,
    pub first: Seg,
    /// Pieces from `+` continuation lines (empty for most lines).
    pub more: Vec<Seg>,
}

impl LogicalLine {
    /// Map a logical byte offset to (physical line, physical byte).
    pub fn locate(&self, off: usize) -> (usize, usize) {
        let mut seg = self.first;
        for s in &self.more {
            if s.logical as usize <= off {
                seg = *s;
            } else {
                break;
            }
        }
        let delta = off.saturating_sub(seg.logical as usize);
        (seg.line as usize, seg.byte as usize + delta)
    }
}

/// All files read so far and a way to turn logical positions into spans.
#[derive(Debug, Default)]
pub struct SourceMap {
    pub files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, f: SourceFile) -> u32 {
        self.files.push(f);
        (self.files.len() - 1) as u32
    }

    /// Span of `len` bytes at logical byte `off` of line `ll`.
    pub fn span(&self, ll: &LogicalLine, off: usize, len: usize) -> Span {
        let (line, byte) = ll.locate(off);
        match self.files.get(ll.file as usize) {
            Some(f) => f.span_at(line, byte, len),
            None => Span::default(),
        }
    }

    /// Span of a whole physical line of a file (used for file-level errors).
    pub fn line_span(&self, file: u32, line: usize) -> Span {
        match self.files.get(file as usize) {
            Some(f) => f.span_at(line, 0, f.line(line).len()),
            None => Span::default(),
        }
    }
}

/// Remove an inline comment (`;` or `$` followed by blank/end) that is outside `{…}` and quotes.
/// Returns the byte length of the part to keep.
pub fn strip_inline_comment(line: &str) -> usize {
    let b = line.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    for i in 0..b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            b'\'' | b'"' => quote = Some(c),
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => return i,
            b'$' if depth == 0 && (i + 1 == b.len() || b[i + 1] == b' ' || b[i + 1] == b'\t') => {
                return i
            }
            _ => {}
        }
    }
    b.len()
}

/// Result of phase 1 for one file.
pub struct Phase1 {
    pub title: Option<String>,
    pub lines: Vec<LogicalLine>,
    /// A `+` line with nothing before it to continue: (physical line, byte).
    pub orphan_continuation: Option<usize>,
}

/// Split file `file_id` of `map` into logical lines. With `has_title`, the first physical line is
/// the title.
pub fn logical_lines(map: &SourceMap, file_id: u32, has_title: bool) -> Phase1 {
    let f = &map.files[file_id as usize];
    let mut out: Vec<LogicalLine> = Vec::new();
    let mut title = None;
    let mut orphan = None;
    let mut start = 0;
    if has_title {
        title = Some(f.line(0).trim().trim_start_matches('\u{feff}').to_string());
        start = 1;
    }
    for i in start..f.n_lines() {
        let raw = f.line(i);
        let lead = raw.len() - raw.trim_start().len();
        let body = &raw[lead..];
        if body.is_empty() || body.starts_with('*') {
            continue;
        }
        let keep = strip_inline_comment(raw);
        let kept = &raw[..keep.max(lead)];
        if let Some(rest) = body.strip_prefix('+') {
            let _ = rest;
            let cont_start = lead + 1;
            let piece = &kept[cont_start.min(kept.len())..];
            match out.last_mut() {
                Some(prev) if prev.file == file_id => {
                    let logical = prev.text.len() + 1;
                    prev.text.push(' ');
                    prev.text.push_str(piece);
                    prev.more.push(Seg {
                        logical: logical as u32,
                        line: i as u32,
                        byte: cont_start as u32,
                    });
                }
                _ => {
                    if orphan.is_none() {
                        orphan = Some(i);
                    }
                }
            }
            continue;
        }
        let piece = kept[lead..].trim_end();
        if piece.is_empty() {
            continue;
        }
        out.push(LogicalLine {
            text: piece.to_string(),
            file: file_id,
            first: Seg {
                logical: 0,
                line: i as u32,
                byte: lead as u32,
            },
            more: Vec::new(),
        });
    }
    Phase1 {
        title,
        lines: out,
        orphan_continuation: orphan,
    }
}
