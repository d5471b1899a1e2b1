//! Phase 3: `.include file` and `.lib file section` resolution, `.control` blocks and `.end`.
//!
//! Paths are relative to the directory of the including file. Included files have no title line
//! (as in ngspice). In a library file, `.lib name` … `.endl` delimit sections; `.lib file name`
//! splices section `name` of `file` (the same file is allowed). Sections met while reading a file
//! normally are skipped: they are only read through `.lib file section`. `.end` stops the file it is
//! in. A file (or library section) that includes itself, directly or not, is an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lines::{logical_lines, LogicalLine, SourceFile, SourceMap};
use super::parse::{parse_line, Stmt, StmtKind};
use super::SpiceError;

/// Everything phase 3 produces: the statement list and the tables to locate them.
pub struct Loaded {
    pub title: String,
    pub map: SourceMap,
    pub lines: Vec<LogicalLine>,
    pub stmts: Vec<Stmt>,
    pub warnings: Vec<String>,
}

impl Loaded {
    /// Span of `len` bytes at byte `off` of the logical line of statement line `line`.
    pub fn span(&self, line: u32, off: u32, len: u32) -> crate::span::Span {
        match self.lines.get(line as usize) {
            Some(ll) => self.map.span(ll, off as usize, len as usize),
            None => crate::span::Span::default(),
        }
    }
}

/// Deepest chain of `.include` / `.lib` files (ngspice has no limit; this one keeps the
/// recursive reader far from the end of the stack).
pub const MAX_INCLUDE_DEPTH: usize = 64;

struct Loader {
    map: SourceMap,
    lines: Vec<LogicalLine>,
    warnings: Vec<String>,
    /// Files (and sections) being read, for cycle detection.
    stack: Vec<(PathBuf, Option<String>)>,
}

/// Read the main file (its first line is the title) with every include resolved.
pub fn load_main(name: &str, text: String, dir: &Path, key: PathBuf) -> Result<Loaded, SpiceError> {
    load(name, text, dir, key, true)
}

/// Read a file that has no title line (a model card, included text) with every include resolved.
pub fn load_untitled(
    name: &str,
    text: String,
    dir: &Path,
    key: PathBuf,
) -> Result<Loaded, SpiceError> {
    load(name, text, dir, key, false)
}

fn load(
    name: &str,
    text: String,
    dir: &Path,
    key: PathBuf,
    has_title: bool,
) -> Result<Loaded, SpiceError> {
    let mut l = Loader {
        map: SourceMap::default(),
        lines: Vec::new(),
        warnings: Vec::new(),
        stack: vec![(key, None)],
    };
    // ngspice splits lines at LF only (CRLF works as the CR is whitespace): a file with CR-only
    // line endings is one long title line and no circuit. Say so instead of "no unknowns".
    let cr_only = !text.contains('\n') && text.trim_end_matches('\r').contains('\r');
    let fid = l.map.add(SourceFile::new(Arc::from(name), text));
    if cr_only {
        return Err(SpiceError::Syntax {
            msg: "the lines end in CR only (classic Mac OS line endings): ngspice reads the \
                  whole file as its title line, so there is no circuit; convert the line \
                  endings to LF"
                .into(),
            span: l.map.files[fid as usize].span_at(0, 0, 1),
        });
    }
    let (title, raw) = l.read_file(fid, has_title)?;
    let mut stmts = Vec::new();
    l.expand(raw, dir, &mut stmts)?;
    Ok(Loaded {
        title: title.unwrap_or_default(),
        map: l.map,
        lines: l.lines,
        stmts,
        warnings: l.warnings,
    })
}

impl Loader {
    /// Phases 1 and 2 for one file: statements up to `.end`, `.control` blocks removed.
    fn read_file(
        &mut self,
        fid: u32,
        has_title: bool,
    ) -> Result<(Option<String>, Vec<Stmt>), SpiceError> {
        let p1 = logical_lines(&self.map, fid, has_title);
        if let Some(line) = p1.orphan_continuation {
            return Err(SpiceError::Syntax {
                msg: "`+` continuation line with no line to continue".into(),
                span: self.map.files[fid as usize].span_at(line, 0, 1),
            });
        }
        let mut out = Vec::with_capacity(p1.lines.len());
        let mut in_control: Option<u32> = None;
        for mut ll in p1.lines {
            let idx = self.lines.len() as u32;
            let is_dot = ll.text.starts_with('.');
            if in_control.is_some() {
                if is_dot && first_word_lower(&ll.text) == ".endc" {
                    in_control = None;
                }
                continue;
            }
            let st = parse_line(&self.map, &mut ll, idx, &mut self.warnings)?;
            match st.kind {
                StmtKind::End => {
                    self.lines.push(ll);
                    break;
                }
                StmtKind::Control => {
                    self.warnings.push(self.map.span(&ll, 0, 8).render(
                        "warning: `.control` block skipped (ngspice script commands are not run)",
                    ));
                    in_control = Some(idx);
                    continue;
                }
                StmtKind::Endc => {
                    return Err(SpiceError::Syntax {
                        msg: "`.endc` without `.control`".into(),
                        span: self.map.span(&ll, 0, 5),
                    })
                }
                StmtKind::Ignored => continue,
                _ => {}
            }
            self.lines.push(ll);
            out.push(st);
        }
        Ok((p1.title, out))
    }

    fn span_of(&self, st: &Stmt, off: u32, len: u32) -> crate::span::Span {
        match self.lines.get(st.line as usize) {
            Some(ll) => self.map.span(ll, off as usize, len as usize),
            None => crate::span::Span::default(),
        }
    }

    fn read_path(
        &mut self,
        path: &Path,
        st: &Stmt,
        off: u32,
        len: u32,
    ) -> Result<(u32, PathBuf), SpiceError> {
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(SpiceError::TooLarge {
                what: format!("`.include` files nested deeper than {MAX_INCLUDE_DEPTH}"),
                span: self.span_of(st, off, len),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| SpiceError::IncludeNotFound {
            path: path.display().to_string(),
            reason: e.to_string(),
            span: self.span_of(st, off, len),
        })?;
        let text = super::utf8_text(bytes);
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let fid = self
            .map
            .add(SourceFile::new(Arc::from(path.display().to_string()), text));
        Ok((fid, key))
    }

    /// Resolve includes in `raw` (statements of a file in `dir`), appending to `out`.
    fn expand(
        &mut self,
        raw: Vec<Stmt>,
        dir: &Path,
        out: &mut Vec<Stmt>,
    ) -> Result<(), SpiceError> {
        let mut in_section: Option<Stmt> = None;
        for st in raw {
            if in_section.is_some() {
                if matches!(st.kind, StmtKind::LibEnd) {
                    in_section = None;
                }
                continue;
            }
            match &st.kind {
                StmtKind::Include { path, off, len } => {
                    let full = dir.join(path);
                    let (off, len) = (*off, *len);
                    let (fid, key) = self.read_path(&full, &st, off, len)?;
                    if self.stack.iter().any(|(k, _)| *k == key) {
                        return Err(SpiceError::IncludeCycle {
                            path: full.display().to_string(),
                            span: self.span_of(&st, off, len),
                        });
                    }
                    let (_, inner) = self.read_file(fid, false)?;
                    self.stack.push((key, None));
                    let sub_dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
                    self.expand(inner, &sub_dir, out)?;
                    self.stack.pop();
                }
                StmtKind::LibInclude {
                    path,
                    section,
                    off,
                    len,
                } => {
                    let full = dir.join(path);
                    let section = section.clone();
                    let (off, len) = (*off, *len);
                    let (fid, key) = self.read_path(&full, &st, off, len)?;
                    if self
                        .stack
                        .iter()
                        .any(|(k, s)| *k == key && s.as_deref() == Some(section.as_str()))
                    {
                        return Err(SpiceError::IncludeCycle {
                            path: format!("{} (section {section})", full.display()),
                            span: self.span_of(&st, off, len),
                        });
                    }
                    let (_, inner) = self.read_file(fid, false)?;
                    let body = select_section(inner, &section).ok_or_else(|| {
                        SpiceError::LibSectionNotFound {
                            section: section.clone(),
                            path: full.display().to_string(),
                            span: self.span_of(&st, off, len),
                        }
                    })?;
                    self.stack.push((key, Some(section)));
                    let sub_dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
                    self.expand(body, &sub_dir, out)?;
                    self.stack.pop();
                }
                StmtKind::LibStart { .. } => in_section = Some(st),
                StmtKind::LibEnd => {
                    return Err(SpiceError::Syntax {
                        msg: "`.endl` without `.lib`".into(),
                        span: self.span_of(&st, 0, 5),
                    })
                }
                _ => out.push(st),
            }
        }
        if let Some(st) = in_section {
            return Err(SpiceError::Syntax {
                msg: "`.lib` section has no `.endl`".into(),
                span: self.span_of(&st, 0, 4),
            });
        }
        Ok(())
    }
}

/// The statements between `.lib section` and its `.endl` (nested `.lib file sec` kept).
fn select_section(stmts: Vec<Stmt>, section: &str) -> Option<Vec<Stmt>> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut found = false;
    for st in stmts {
        match &st.kind {
            StmtKind::LibStart { section: s } if !inside && s == section => {
                inside = true;
                found = true;
            }
            StmtKind::LibEnd if inside => inside = false,
            _ if inside => out.push(st),
            _ => {}
        }
    }
    found.then_some(out)
}

fn first_word_lower(s: &str) -> String {
    s.split(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}
