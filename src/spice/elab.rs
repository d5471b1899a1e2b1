//! Phases 4–6: subcircuit definitions, parameters and elaboration into a flat [`Netlist`].
//!
//! Decisions (checked against ngspice 39 where it matters):
//! - Subcircuit definitions may be nested; a nested definition is visible inside its parent only
//!   (lexical scope, searched outwards). Models defined inside a subcircuit are local the same way;
//!   a local model is evaluated per instance (its `{…}` may use the instance's parameters) and named
//!   `x1.nch` in the netlist, a global one keeps its name.
//! - Parameters: `.param` at top level are global, in any order (a forward reference works, as in
//!   ngspice); a parameter that depends on itself is an error. An instance `X1 … sub k=2` evaluates
//!   its values in the caller's scope; the subcircuit's defaults and its local `.param`s are then
//!   evaluated in the new scope. Lookup is dynamic, as ngspice's: instance scope, then the scope of
//!   the calling instance, …, then the globals. An instance value for a parameter the subcircuit
//!   does not declare is an error. A parameter defined twice in one scope: the last one wins (with a
//!   warning).
//! - Numbers: `{expr}`, `'expr'` and a bare parameter name are accepted wherever a number goes;
//!   inside an expression (`V={vs}*tanh({a}*V(in))`) a brace is a parenthesised sub-expression,
//!   which is what ngspice's substitution of its value amounts to.
//!   `^`/`**` evaluate as `|a|^b` (ngspice), see [`Expr::eval_const`].
//! - B sources: bare parameter names in the expression are replaced by their values; `V(n)` nodes
//!   and `I(v)` sources are renamed like the element's own nodes.
//! - Elements are named `prefix + name` (`x1.x2.r1`), nodes not on a pin `prefix + node`
//!   (`x1.mid`); `0`, `gnd` (→ `0`) and `.global` nodes are never prefixed. A card named
//!   `r.x1.r1` (the letter, a dot, then a name that does not start with that letter — the form
//!   [`super::write_netlist`] and ngspice use for flattened members) is stored as `x1.r1`.
//! - `R` value 0 becomes 1 mΩ with a warning (ngspice does the same). Resistor `m=` divides the
//!   resistance; `tc1`/`tc2`/`ac` are ignored with a warning (no effect at the nominal 27 °C).
//! - `V`/`I`: `[DC] value`, `dc=value`; `AC …` ignored with a warning; `pulse sin exp pwl sffm (…)`
//!   ignored with a warning, and when no DC value is given their value at t = 0 is used (as
//!   ngspice does); no value at all → 0 with a warning.
//! - `M d g s b model [w=] [l=]`: W and L default to 100 µm (ngspice's DEFW/DEFL, changeable with
//!   `.options defw= defl=`); `m` other than 1 is unsupported; `ad as pd ps nrd nrs off` ignored.
//!   Models: `nmos`/`pmos`, level 1 only (another level → unsupported error when used).
//!   Parameters VTO KP LAMBDA GAMMA PHI IS LD are used; capacitances and noise parameters (no DC
//!   effect) are ignored with a warning; TOX/UO are ignored when KP is given, and an error when KP
//!   would have to be derived from them; any other parameter (RD, RS, NSUB, …) → unsupported.
//!   Models of other types are accepted as long as no element uses them.
//! - Capacitors are dropped with a warning (open in DC); other element letters are unsupported.
//! - `.dc` sweeps one top-level independent V or I source; nested sweeps are unsupported.
//! - `.op`, `.dc`, `.options` and `.global` apply globally wherever they stand.

use std::collections::{HashMap, HashSet};

use super::include::Loaded;
use super::number::parse_number;
use super::parse::{card_head, parse_card, Item, Stmt, StmtKind, Tok};
use super::SpiceError;
use crate::expr::{ConstEvalError, Expr};
use crate::netlist::{
    Analysis, Element, ElementKind, FastMap, MosModel, Netlist, SimOptions, GROUND,
};
use crate::span::Span;

/// ngspice's default MOSFET channel width and length (DEFW, DEFL), in metres.
pub const DEFAULT_W_M: f64 = 100e-6;
pub const DEFAULT_L_M: f64 = 100e-6;
/// Deepest subcircuit nesting accepted (elaboration recurses once per level).
pub const MAX_HIERARCHY_DEPTH: usize = 200;
/// Memory planned per flat element: the element, its name and span, and its share of the
/// solver's matrix and vectors (measured order of magnitude, rounded up).
pub const BYTES_PER_ELEMENT: u64 = 2048;

/// Normalise an element name: `r.x1.r1` (letter, dot, rest not starting with the letter) → `x1.r1`.
pub fn normalize_element_name(name: &str) -> &str {
    let b = name.as_bytes();
    if b.len() > 2 && b[1] == b'.' && b[2] != b[0] {
        &name[2..]
    } else {
        name
    }
}

struct ParamDef<'a> {
    name: &'a str,
    value: &'a Item<'a>,
    line: u32,
    key_tok: &'a Tok<'a>,
}

struct Def<'a> {
    name: &'a str,
    pins: Vec<&'a str>,
    defaults: Vec<ParamDef<'a>>,
    params: Vec<ParamDef<'a>>,
    cards: Vec<usize>,
    models: HashMap<&'a str, usize>,
    children: HashMap<&'a str, usize>,
    parent: Option<usize>,
    /// Statement index of the `.subckt` card (root: none).
    stmt: Option<usize>,
}

impl<'a> Def<'a> {
    fn new(name: &'a str, parent: Option<usize>, stmt: Option<usize>) -> Self {
        Def {
            name,
            pins: Vec::new(),
            defaults: Vec::new(),
            params: Vec::new(),
            cards: Vec::new(),
            models: HashMap::new(),
            children: HashMap::new(),
            parent,
            stmt,
        }
    }
}

/// A parameter scope (dynamic chain up to the globals).
pub struct Scope<'p> {
    vals: HashMap<String, f64>,
    parent: Option<&'p Scope<'p>>,
}

impl Scope<'_> {
    fn get(&self, n: &str) -> Option<f64> {
        let mut s = Some(self);
        while let Some(sc) = s {
            if let Some(v) = sc.vals.get(n) {
                return Some(*v);
            }
            s = sc.parent;
        }
        None
    }
}

struct Inst<'s> {
    prefix: String,
    pins: HashMap<String, String>,
    scope: &'s Scope<'s>,
    chain: Vec<usize>,
    /// Span of the top-level instance card (members of subcircuits point there).
    top_span: Option<Span>,
    local_models: HashMap<usize, MosModel>,
}

/// The directive cards of a netlist parsed (tokens borrowed from the logical lines), by the
/// statement's logical line.
type Cards<'a> = FastMap<u32, (Tok<'a>, Vec<Item<'a>>)>;

/// Parse every directive card of `ld` again, borrowing from its lines (phase 2 checked them).
fn parse_cards(ld: &Loaded) -> Result<Cards<'_>, SpiceError> {
    let mut cards = Cards::default();
    for st in &ld.stmts {
        if !matches!(st.kind, StmtKind::Card) {
            continue;
        }
        let Some(ll) = ld.lines.get(st.line as usize) else {
            continue;
        };
        let parsed = parse_card(&ll.text, &|off, len| ld.map.span(ll, off, len))?;
        cards.insert(st.line, parsed);
    }
    Ok(cards)
}

struct Elab<'a> {
    ld: &'a Loaded,
    cards: &'a Cards<'a>,
    defs: Vec<Def<'a>>,
    globals: HashSet<String>,
    elements: Vec<Element>,
    warnings: Vec<String>,
    global_models: HashMap<usize, MosModel>,
    warned_models: HashSet<usize>,
    /// References to voltage sources to check after elaboration: (name, what, span).
    vsrc_refs: Vec<(String, Span)>,
    defw_m: f64,
    defl_m: f64,
    /// Flat elements the memory budget allows (see [`BYTES_PER_ELEMENT`]).
    max_elements: usize,
}

/// Phases 4–6.
pub fn elaborate(ld: Loaded) -> Result<Netlist, SpiceError> {
    let cards = parse_cards(&ld)?;
    let mut e = Elab::new(
        &ld,
        &cards,
        (crate::limits::max_memory().0 / BYTES_PER_ELEMENT) as usize,
    );
    let top = e.collect_defs()?;
    // Global parameters.
    let empty = Scope {
        vals: HashMap::new(),
        parent: None,
    };
    let gvals = e.eval_params(&e.defs[0].params, HashMap::new(), &empty)?;
    let global = Scope {
        vals: gvals,
        parent: None,
    };
    // Options first (they may change MOSFET defaults), then analyses in file order.
    let mut options = SimOptions::default();
    let mut analyses = Vec::new();
    for &i in &top {
        let st = &ld.stmts[i];
        let Some((head, items)) = e.card(st) else {
            continue;
        };
        if matches!(head.text, ".options" | ".option" | ".opt") {
            e.options(st, items, &global, &mut options)?;
        }
    }
    for &i in &top {
        let st = &ld.stmts[i];
        let Some((head, items)) = e.card(st) else {
            continue;
        };
        match head.text {
            ".op" => {
                if let Some(it) = items.first() {
                    return Err(e.syntax(st, it.tok(), "`.op` takes no arguments"));
                }
                analyses.push(Analysis::Op {
                    span: e.span(st, head),
                })
            }
            ".dc" => analyses.push(e.dc(st, head, items, &global)?),
            _ => {}
        }
    }
    let mut root = Inst {
        prefix: String::new(),
        pins: HashMap::new(),
        scope: &global,
        chain: vec![0],
        top_span: None,
        local_models: HashMap::new(),
    };
    e.check_flat_size()?;
    // Room for the top level's cards (a flat netlist's elements, at most): one allocation instead
    // of doubling from 4, which touched about twice the pages and copied the array ~log2(n)
    // times. Capped by the element budget, which bounds the memory; subcircuits grow it as before.
    let top_cards = e.defs[0].cards.len().min(e.max_elements);
    e.elements.reserve_exact(top_cards);
    e.elab_def(0, &mut root)?;
    e.check_names()?;
    for a in &analyses {
        if let Analysis::Dc { src, span, .. } = a {
            let ok = e.elements.iter().any(|el| {
                el.name == *src
                    && matches!(
                        el.kind,
                        ElementKind::VSource { .. } | ElementKind::ISource { .. }
                    )
            });
            if !ok {
                return Err(SpiceError::UnknownSource {
                    name: src.clone(),
                    expected: "independent voltage or current source".into(),
                    span: span.clone(),
                });
            }
        }
    }
    let mut warnings = ld.warnings.clone();
    warnings.append(&mut e.warnings);
    Ok(Netlist {
        title: ld.title.clone(),
        elements: e.elements,
        analyses,
        options,
        warnings,
    })
}

/// What a device model card holds, read by the same front end as netlists: its global `.param`
/// values (each with the span of its name) and its `.model` cards (level-1 MOSFETs, each with the
/// span of its name). A card has no elements, subcircuits or analyses.
#[derive(Debug, Clone, Default)]
pub struct CardContents {
    pub params: std::collections::BTreeMap<String, (f64, Span)>,
    pub models: Vec<(MosModel, Span)>,
}

/// Phases 4–5 for a model card (see [`CardContents`]).
pub fn elaborate_card(ld: Loaded) -> Result<CardContents, SpiceError> {
    // a card has no elements (refused below)
    let cards = parse_cards(&ld)?;
    let mut e = Elab::new(&ld, &cards, 0);
    let top = e.collect_defs()?;
    let not_in_card = |st: &Stmt, what: &str| SpiceError::Unsupported {
        what: format!("{what} in a device model card (only `.param` and `.model`)"),
        span: ld.span(st.line, 0, 1),
    };
    if let Some(&i) = e.defs[0]
        .cards
        .iter()
        .find(|&&i| matches!(ld.stmts[i].kind, StmtKind::Element))
    {
        return Err(not_in_card(&ld.stmts[i], "an element"));
    }
    if e.defs.len() > 1 {
        let st = e.defs[1].stmt.map(|i| &ld.stmts[i]);
        return Err(match st {
            Some(st) => not_in_card(st, "a `.subckt`"),
            None => SpiceError::Syntax {
                msg: "a device model card has no subcircuits".into(),
                span: Span::default(),
            },
        });
    }
    if let Some(&i) = top.first() {
        return Err(not_in_card(&ld.stmts[i], "an analysis or `.options`"));
    }
    let empty = Scope {
        vals: HashMap::new(),
        parent: None,
    };
    let vals = e.eval_params(&e.defs[0].params, HashMap::new(), &empty)?;
    let mut params = std::collections::BTreeMap::new();
    for d in &e.defs[0].params {
        if let Some(v) = vals.get(d.name) {
            params.insert(
                d.name.to_string(),
                (*v, ld.span(d.line, d.key_tok.off, d.key_tok.len)),
            );
        }
    }
    let global = Scope { vals, parent: None };
    let mut stmts: Vec<usize> = e.defs[0].models.values().copied().collect();
    stmts.sort_unstable();
    let mut models = Vec::with_capacity(stmts.len());
    for i in stmts {
        let st = &ld.stmts[i];
        let Some((head, items)) = e.card(st) else {
            continue;
        };
        let m = e.eval_model(i, &global, "", st, head)?;
        let span = match items.first() {
            Some(it) => e.span(st, it.tok()),
            None => e.span(st, head),
        };
        models.push((m, span));
    }
    Ok(CardContents { params, models })
}

impl<'a> Elab<'a> {
    /// A fresh elaboration of `ld` with only the top-level definition and at most `max_elements`
    /// elements after expansion.
    fn new(ld: &'a Loaded, cards: &'a Cards<'a>, max_elements: usize) -> Self {
        Elab {
            ld,
            cards,
            defs: vec![Def::new("", None, None)],
            globals: HashSet::new(),
            elements: Vec::new(),
            warnings: Vec::new(),
            global_models: HashMap::new(),
            warned_models: HashSet::new(),
            vsrc_refs: Vec::new(),
            defw_m: DEFAULT_W_M,
            defl_m: DEFAULT_L_M,
            max_elements,
        }
    }

    /// The parsed directive card of statement `st` (`None` for other statements).
    fn card(&self, st: &Stmt) -> Option<(&'a Tok<'a>, &'a [Item<'a>])> {
        let cards: &'a Cards<'a> = self.cards;
        cards.get(&st.line).map(|(h, items)| (h, items.as_slice()))
    }

    fn span(&self, st: &Stmt, t: &Tok) -> Span {
        self.ld.span(st.line, t.off, t.len)
    }

    fn syntax(&self, st: &Stmt, t: &Tok, msg: &str) -> SpiceError {
        SpiceError::Syntax {
            msg: msg.into(),
            span: self.span(st, t),
        }
    }

    fn warn(&mut self, span: Span, msg: &str) {
        self.warnings.push(span.render(&format!("warning: {msg}")));
    }

    /// Phase 4: split the statement list into definitions. Returns the statements that act
    /// globally (`.op`, `.dc`, `.options`), in file order.
    fn collect_defs(&mut self) -> Result<Vec<usize>, SpiceError> {
        let ld = self.ld;
        let mut cur = 0usize;
        let mut top = Vec::new();
        let mut local_names: Vec<HashMap<&'a str, usize>> = vec![HashMap::new()];
        for (i, st) in ld.stmts.iter().enumerate() {
            if let StmtKind::Element = st.kind {
                let h = ld
                    .lines
                    .get(st.line as usize)
                    .map_or("", |l| card_head(&l.text));
                // Element names must be unique inside a definition (the top level is checked
                // after elaboration, which also covers clashes across levels).
                if cur != 0 {
                    let name = normalize_element_name(h);
                    if let Some(&first) = local_names[cur].get(name) {
                        let first_st = &ld.stmts[first];
                        let first_len = ld
                            .lines
                            .get(first_st.line as usize)
                            .map_or(1, |l| card_head(&l.text).len());
                        let fh = self.ld.span(first_st.line, 0, first_len as u32);
                        return Err(SpiceError::Duplicate {
                            name: name.to_string(),
                            first: Box::new(fh),
                            span: self.ld.span(st.line, 0, h.len() as u32),
                        });
                    }
                    local_names[cur].insert(name, i);
                }
                self.defs[cur].cards.push(i);
                continue;
            }
            let Some((head, items)) = self.card(st) else {
                continue;
            };
            let h: &str = head.text;
            match h {
                ".subckt" => {
                    let mut it = items.iter();
                    let name = match it.next() {
                        Some(Item::Word(t)) => t.text,
                        Some(other) => {
                            return Err(self.syntax(st, other.tok(), "expected a subcircuit name"))
                        }
                        None => return Err(self.syntax(st, head, "`.subckt` needs a name")),
                    };
                    let mut def = Def::new(name, Some(cur), Some(i));
                    let mut params_kw = false;
                    for item in it {
                        match item {
                            Item::Word(t) if t.text == "params:" => params_kw = true,
                            Item::Word(t) if !params_kw => def.pins.push(t.text),
                            Item::Kv(k, v) => def.defaults.push(ParamDef {
                                name: k.text,
                                value: v,
                                line: st.line,
                                key_tok: k,
                            }),
                            other => {
                                return Err(self.syntax(
                                    st,
                                    other.tok(),
                                    "expected a pin name or `name=value`",
                                ))
                            }
                        }
                    }
                    let id = self.defs.len();
                    if let Some(&prev) = self.defs[cur].children.get(name) {
                        let p = &ld.stmts[self.defs[prev].stmt.unwrap_or(0)];
                        let ph = self
                            .card(p)
                            .map(|(t, _)| self.span(p, t))
                            .unwrap_or_default();
                        return Err(SpiceError::Duplicate {
                            name: name.to_string(),
                            first: Box::new(ph),
                            span: self.span(st, head),
                        });
                    }
                    self.defs[cur].children.insert(name, id);
                    self.defs.push(def);
                    local_names.push(HashMap::new());
                    cur = id;
                }
                ".ends" => {
                    if cur == 0 {
                        return Err(self.syntax(st, head, "`.ends` without `.subckt`"));
                    }
                    if let Some(item) = items.first() {
                        let ok = matches!(item, Item::Word(t) if *t.text == *self.defs[cur].name);
                        if !ok || items.len() > 1 {
                            return Err(self.syntax(
                                st,
                                item.tok(),
                                &format!(
                                    "`.ends` does not match `.subckt {}`",
                                    self.defs[cur].name
                                ),
                            ));
                        }
                    }
                    cur = self.defs[cur].parent.unwrap_or(0);
                }
                ".model" => {
                    let name = match items.first() {
                        Some(Item::Word(t)) => t.text,
                        Some(other) => {
                            return Err(self.syntax(st, other.tok(), "expected a model name"))
                        }
                        None => {
                            return Err(self.syntax(st, head, "`.model` needs a name and a type"))
                        }
                    };
                    if items.len() < 2 {
                        return Err(self.syntax(st, head, "`.model` needs a name and a type"));
                    }
                    if let Some(&prev) = self.defs[cur].models.get(name) {
                        let p = &ld.stmts[prev];
                        let first = self
                            .card(p)
                            .and_then(|(_, it)| it.first())
                            .map(|t| self.span(p, t.tok()))
                            .unwrap_or_default();
                        return Err(SpiceError::Duplicate {
                            name: name.to_string(),
                            first: Box::new(first),
                            span: self.span(st, items[0].tok()),
                        });
                    }
                    self.defs[cur].models.insert(name, i);
                }
                ".param" => {
                    if items.is_empty() {
                        return Err(self.syntax(st, head, "`.param` needs `name=value`"));
                    }
                    for item in items {
                        match item {
                            Item::Kv(k, v) => self.defs[cur].params.push(ParamDef {
                                name: k.text,
                                value: v,
                                line: st.line,
                                key_tok: k,
                            }),
                            other => {
                                return Err(self.syntax(st, other.tok(), "expected `name=value`"))
                            }
                        }
                    }
                }
                ".global" => {
                    for item in items {
                        match item {
                            Item::Word(t) => {
                                self.globals.insert(t.text.to_string());
                            }
                            other => {
                                return Err(self.syntax(st, other.tok(), "expected a node name"))
                            }
                        }
                    }
                }
                ".op" | ".dc" | ".options" | ".option" | ".opt" => top.push(i),
                _ => {
                    return Err(SpiceError::UnknownDirective {
                        name: h.to_string(),
                        span: self.span(st, head),
                    })
                }
            }
        }
        if cur != 0 {
            let st = &ld.stmts[self.defs[cur].stmt.unwrap_or(0)];
            let span = self
                .card(st)
                .map(|(h, _)| self.span(st, h))
                .unwrap_or_default();
            return Err(SpiceError::MissingEnds {
                name: self.defs[cur].name.to_string(),
                span,
            });
        }
        Ok(top)
    }

    /// Span of parameter name `name` inside the text of `tok` (falls back to the whole token).
    fn name_span(&self, line: u32, tok: &Tok, name: &str) -> Span {
        let t: &str = tok.text;
        let b = t.as_bytes();
        let mut from = 0;
        while let Some(p) = t[from..].find(name) {
            let s = from + p;
            let e = s + name.len();
            let word = |i: usize| b[i].is_ascii_alphanumeric() || b[i] == b'_';
            if (s == 0 || !word(s - 1)) && (e >= b.len() || !word(e)) {
                return self.ld.span(line, tok.off + s as u32, name.len() as u32);
            }
            from = s + 1;
        }
        self.ld.span(line, tok.off, tok.len)
    }

    /// Evaluate a value item to a number in `scope`.
    fn eval_item(&self, item: &Item, scope: &Scope, line: u32) -> Result<f64, SpiceError> {
        match item {
            Item::Word(t) => {
                if let Some(v) = parse_number(t.text) {
                    return Ok(v);
                }
                if is_ident(t.text) {
                    if let Some(v) = scope.get(t.text) {
                        return Ok(v);
                    }
                }
                Err(SpiceError::BadNumber {
                    text: t.text.to_string(),
                    span: self.ld.span(line, t.off, t.len),
                })
            }
            Item::Expr(t, e) => e.eval_const(&|n| scope.get(n)).map_err(|err| match err {
                ConstEvalError::UnknownParam(name) => SpiceError::UnknownParam {
                    span: self.name_span(line, t, &name),
                    name,
                },
                ConstEvalError::NotConstant => SpiceError::BadValue {
                    msg: "node voltages and branch currents are only allowed in B sources".into(),
                    span: self.ld.span(line, t.off, t.len),
                },
                ConstEvalError::NonFinite => SpiceError::BadValue {
                    msg: "the expression is not a finite number".into(),
                    span: self.ld.span(line, t.off, t.len),
                },
            }),
            Item::Kv(t, v) => {
                let _ = t;
                self.eval_item(v, scope, line)
            }
            Item::Str(t) | Item::Group(t, _) => Err(SpiceError::BadValue {
                msg: "expected a number".into(),
                span: self.ld.span(line, t.off, t.len),
            }),
        }
    }

    /// Evaluate a list of parameter definitions (any order; dependencies first) on top of `fixed`.
    fn eval_params(
        &self,
        defs: &[ParamDef<'a>],
        fixed: HashMap<String, f64>,
        parent: &Scope,
    ) -> Result<HashMap<String, f64>, SpiceError> {
        let mut vals = fixed;
        // Last definition wins.
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut pending: Vec<&ParamDef> = Vec::new();
        for d in defs {
            if vals.contains_key(d.name) {
                continue;
            }
            if let Some(&k) = index.get(d.name) {
                let _ = k;
                // Replace the earlier definition.
                if let Some(slot) = pending.iter_mut().find(|p| p.name == d.name) {
                    *slot = d;
                }
                continue;
            }
            index.insert(d.name, pending.len());
            pending.push(d);
        }
        if pending.is_empty() {
            return Ok(vals);
        }
        // Dependencies inside the pending set; Kahn's algorithm.
        let n = pending.len();
        let mut indeg = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, d) in pending.iter().enumerate() {
            let mut deps: Vec<usize> = match d.value {
                Item::Expr(_, e) => e
                    .param_names()
                    .iter()
                    .filter_map(|p| index.get(p).copied())
                    .collect(),
                Item::Word(t) if parse_number(t.text).is_none() => {
                    index.get(t.text).copied().into_iter().collect()
                }
                _ => Vec::new(),
            };
            deps.sort_unstable();
            deps.dedup();
            indeg[i] = deps.len();
            for dep in deps {
                users[dep].push(i);
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        ready.reverse();
        let mut done = 0;
        while let Some(i) = ready.pop() {
            done += 1;
            let d = pending[i];
            let v = {
                let sc = Scope {
                    vals: std::mem::take(&mut vals),
                    parent: Some(parent),
                };
                let r = self.eval_item(d.value, &sc, d.line);
                vals = sc.vals;
                r?
            };
            vals.insert(d.name.to_string(), v);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(u);
                }
            }
        }
        if done < n {
            let d = pending
                .iter()
                .enumerate()
                .find(|(i, _)| indeg[*i] > 0)
                .map(|(_, d)| *d)
                .unwrap_or(pending[0]);
            return Err(SpiceError::ParamCycle {
                name: d.name.to_string(),
                span: self.ld.span(d.line, d.key_tok.off, d.key_tok.len),
            });
        }
        Ok(vals)
    }

    fn options(
        &mut self,
        st: &Stmt,
        items: &[Item],
        scope: &Scope,
        o: &mut SimOptions,
    ) -> Result<(), SpiceError> {
        for item in items {
            match item {
                Item::Kv(k, v) => {
                    let key: &str = k.text;
                    let known = matches!(
                        key,
                        "reltol" | "abstol" | "vntol" | "gmin" | "itl1" | "itl2" | "defw" | "defl"
                    );
                    if !known {
                        let sp = self.span(st, k);
                        self.warn(sp, &format!("option `{key}` ignored"));
                        continue;
                    }
                    let x = self.eval_item(v, scope, st.line)?;
                    let bad = |msg: &str| SpiceError::BadValue {
                        msg: format!("option `{key}`: {msg}"),
                        span: self.span(st, v.tok()),
                    };
                    if x <= 0.0 && key != "abstol" && key != "vntol" && key != "gmin" {
                        return Err(bad("must be positive"));
                    }
                    if x < 0.0 {
                        return Err(bad("must not be negative"));
                    }
                    match key {
                        "reltol" => o.reltol = x,
                        "abstol" => o.abstol_a = x,
                        "vntol" => o.vntol_v = x,
                        "gmin" => o.gmin_siemens = x,
                        "itl1" | "itl2" => {
                            if x.fract() != 0.0 || x > 1e9 {
                                return Err(bad("must be a whole number"));
                            }
                            if key == "itl1" {
                                o.itl1 = x as usize
                            } else {
                                o.itl2 = x as usize
                            }
                        }
                        "defw" => self.defw_m = x,
                        _ => self.defl_m = x,
                    }
                }
                other => {
                    let sp = self.span(st, other.tok());
                    self.warn(sp, &format!("option `{}` ignored", other.tok().text));
                }
            }
        }
        Ok(())
    }

    fn dc(
        &self,
        st: &Stmt,
        head: &Tok,
        items: &[Item],
        scope: &Scope,
    ) -> Result<Analysis, SpiceError> {
        if items.len() > 4 {
            return Err(SpiceError::Unsupported {
                what: "nested `.dc` sweeps (one source only)".into(),
                span: self.span(st, items[4].tok()),
            });
        }
        if items.len() < 4 {
            return Err(self.syntax(st, head, "expected `.dc SRC start stop step`"));
        }
        let src = match &items[0] {
            Item::Word(t) => normalize_element_name(t.text).to_string(),
            other => return Err(self.syntax(st, other.tok(), "expected a source name")),
        };
        let start = self.eval_item(&items[1], scope, st.line)?;
        let stop = self.eval_item(&items[2], scope, st.line)?;
        let step = self.eval_item(&items[3], scope, st.line)?;
        if step == 0.0 || (stop - start) * step < 0.0 || ((stop - start) / step).abs() > 1e8 {
            return Err(SpiceError::BadValue {
                msg: "the `.dc` step must be non-zero, point from start to stop, and give at most 1e8 points".into(),
                span: self.span(st, items[3].tok()),
            });
        }
        Ok(Analysis::Dc {
            src,
            start,
            stop,
            step,
            span: self.span(st, head),
        })
    }

    fn map_node(&self, inst: &Inst, n: &str) -> String {
        if n == GROUND || n == "gnd" {
            return GROUND.to_string();
        }
        if inst.prefix.is_empty() || self.globals.contains(n) {
            return n.to_string();
        }
        if let Some(a) = inst.pins.get(n) {
            return a.clone();
        }
        let mut s = String::with_capacity(inst.prefix.len() + n.len());
        s.push_str(&inst.prefix);
        s.push_str(n);
        s
    }

    /// Count the flat elements the hierarchy expands to (instances counted, not expanded) and
    /// refuse, at the top-level instance that contributes most, when they exceed the budget:
    /// a hierarchy that doubles 40 times is refused at once instead of expanding until memory
    /// runs out. Cards the count cannot read are left to the elaboration to report.
    fn check_flat_size(&self) -> Result<(), SpiceError> {
        let mut memo = HashMap::new();
        let mut biggest: Option<(u128, usize)> = None;
        let mut total = 0u128;
        for (count, si) in self.card_counts(0, &mut memo, 0) {
            total = total.saturating_add(count);
            if biggest.as_ref().is_none_or(|b| count > b.0) {
                biggest = Some((count, si));
            }
        }
        if total > self.max_elements as u128 {
            let (limit, from) = crate::limits::max_memory();
            return Err(SpiceError::TooLarge {
                what: format!(
                    "the subcircuit hierarchy expands to {total} elements, more than the {} \
                     that fit the memory limit of {} from {from} (about {BYTES_PER_ELEMENT} \
                     bytes each; raise it with --max-memory)",
                    self.max_elements,
                    crate::limits::human(limit)
                ),
                span: biggest.map(|b| self.head_span(b.1)).unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Span of the name of element card `si` (a statement index).
    fn head_span(&self, si: usize) -> Span {
        let ld = self.ld;
        let st = &ld.stmts[si];
        let len = ld
            .lines
            .get(st.line as usize)
            .map_or(1, |l| card_head(&l.text).len());
        ld.span(st.line, 0, len as u32)
    }

    /// Flat element count of each element card of `def` (1, or an instance's expansion), with
    /// the card's statement index. Only instance cards are parsed.
    fn card_counts(
        &self,
        def: usize,
        memo: &mut HashMap<usize, u128>,
        depth: usize,
    ) -> Vec<(u128, usize)> {
        let ld = self.ld;
        let mut out = Vec::with_capacity(self.defs[def].cards.len());
        for &si in &self.defs[def].cards {
            let st = &ld.stmts[si];
            if !matches!(st.kind, StmtKind::Element) {
                continue;
            }
            let Some(ll) = ld.lines.get(st.line as usize) else {
                continue;
            };
            if !ll.text.starts_with('x') {
                out.push((1, si));
                continue;
            }
            let Ok((_, items)) = parse_card(&ll.text, &|off, len| ld.map.span(ll, off, len)) else {
                continue;
            };
            let sub = items
                .iter()
                .take_while(|i| !matches!(i, Item::Kv(..)))
                .filter_map(Item::word)
                .filter(|w| *w != "params:")
                .last();
            let Some(child) = sub.and_then(|n| self.find_child(def, n)) else {
                continue;
            };
            let n = match memo.get(&child) {
                Some(&n) => n,
                // deeper than the elaboration accepts, or recursive: it reports those
                None if depth >= MAX_HIERARCHY_DEPTH => 0,
                None => {
                    memo.insert(child, 0); // a cycle back here counts 0
                    let n = self
                        .card_counts(child, memo, depth + 1)
                        .iter()
                        .fold(0u128, |a, c| a.saturating_add(c.0));
                    memo.insert(child, n);
                    n
                }
            };
            out.push((n, si));
        }
        out
    }

    fn find_child(&self, mut def: usize, name: &str) -> Option<usize> {
        loop {
            if let Some(&c) = self.defs[def].children.get(name) {
                return Some(c);
            }
            def = self.defs[def].parent?;
        }
    }

    fn find_model(&self, mut def: usize, name: &str) -> Option<(usize, bool)> {
        loop {
            if let Some(&m) = self.defs[def].models.get(name) {
                return Some((m, def == 0));
            }
            def = self.defs[def].parent?;
        }
    }

    fn elab_def(&mut self, def: usize, inst: &mut Inst) -> Result<(), SpiceError> {
        let ld = self.ld;
        let n_cards = self.defs[def].cards.len();
        for ci in 0..n_cards {
            let si = self.defs[def].cards[ci];
            let st = &ld.stmts[si];
            if !matches!(st.kind, StmtKind::Element) {
                continue;
            }
            // The card is parsed again here (phase 2 kept only its name).
            let (head, items) = match ld.lines.get(st.line as usize) {
                Some(ll) => parse_card(&ll.text, &|off, len| ld.map.span(ll, off, len))?,
                None => continue,
            };
            let (head, items) = (&head, items.as_slice());
            let local = normalize_element_name(head.text);
            let letter = head.text.as_bytes()[0];
            if letter == b'x' {
                self.instance(def, inst, st, head, items)?;
                continue;
            }
            let mut name = String::with_capacity(inst.prefix.len() + local.len());
            name.push_str(&inst.prefix);
            name.push_str(local);
            let span = match &inst.top_span {
                Some(s) => s.clone(),
                None => self.span(st, head),
            };
            if self.elements.len() >= self.max_elements {
                // A hierarchy that doubles at each level expands past any memory long before
                // its depth limit: stop at the budget, naming the instance that got there.
                let (limit, from) = crate::limits::max_memory();
                return Err(SpiceError::TooLarge {
                    what: format!(
                        "the subcircuit hierarchy expands to more than {} elements \
                         (about {} bytes each; the memory limit is {} from {from}, \
                         raise it with --max-memory)",
                        self.max_elements,
                        BYTES_PER_ELEMENT,
                        crate::limits::human(limit)
                    ),
                    span,
                });
            }
            let kind = self.element(def, inst, st, head, items, letter)?;
            self.elements.push(Element { name, kind, span });
        }
        Ok(())
    }

    fn instance(
        &mut self,
        def: usize,
        inst: &mut Inst,
        st: &Stmt,
        head: &Tok,
        items: &[Item],
    ) -> Result<(), SpiceError> {
        let mut words: Vec<&Tok> = Vec::new();
        let mut kvs: Vec<(&Tok, &Item)> = Vec::new();
        for item in items {
            match item {
                Item::Word(t) if t.text == "params:" => {}
                Item::Word(t) if kvs.is_empty() => words.push(t),
                Item::Kv(k, v) => kvs.push((k, v)),
                other => {
                    return Err(self.syntax(
                        st,
                        other.tok(),
                        "expected a node, a subcircuit name or `name=value`",
                    ))
                }
            }
        }
        let Some(sub_tok) = words.pop() else {
            return Err(self.syntax(st, head, "instance needs nodes and a subcircuit name"));
        };
        let child =
            self.find_child(def, sub_tok.text)
                .ok_or_else(|| SpiceError::UnknownSubckt {
                    name: sub_tok.text.to_string(),
                    span: self.span(st, sub_tok),
                })?;
        if inst.chain.contains(&child) {
            let mut chain: Vec<&str> = inst
                .chain
                .iter()
                .skip(1)
                .map(|&d| self.defs[d].name)
                .collect();
            chain.push(self.defs[child].name);
            return Err(SpiceError::SubcktRecursion {
                chain: chain.join(" -> "),
                span: self.span(st, sub_tok),
            });
        }
        if inst.chain.len() > MAX_HIERARCHY_DEPTH {
            return Err(SpiceError::Unsupported {
                what: format!("subcircuit hierarchy deeper than {MAX_HIERARCHY_DEPTH} levels"),
                span: self.span(st, head),
            });
        }
        let cdef = &self.defs[child];
        if cdef.pins.len() != words.len() {
            return Err(SpiceError::PinCount {
                name: head.text.to_string(),
                expected: cdef.pins.len(),
                found: words.len(),
                span: self.span(st, head),
            });
        }
        // Instance values, evaluated in the caller's scope.
        let mut fixed = HashMap::new();
        for (k, v) in kvs {
            if !cdef.defaults.iter().any(|d| d.name == &*k.text) {
                return Err(SpiceError::UnknownParam {
                    name: format!("{} (not a parameter of subcircuit `{}`)", k.text, cdef.name),
                    span: self.span(st, k),
                });
            }
            let x = self.eval_item(v, inst.scope, st.line)?;
            fixed.insert(k.text.to_string(), x);
        }
        let mut pins = HashMap::with_capacity(words.len());
        for (formal, actual) in cdef.pins.iter().zip(&words) {
            pins.insert(formal.to_string(), self.map_node(inst, actual.text));
        }
        let defaults: Vec<ParamDef<'a>> = cdef
            .defaults
            .iter()
            .chain(cdef.params.iter())
            .map(|d| ParamDef { ..*d })
            .collect();
        let vals = self.eval_params(&defaults, fixed, inst.scope)?;
        let scope = Scope {
            vals,
            parent: Some(inst.scope),
        };
        let local = normalize_element_name(head.text);
        let mut chain = inst.chain.clone();
        chain.push(child);
        let mut sub = Inst {
            prefix: format!("{}{}.", inst.prefix, local),
            pins,
            scope: &scope,
            chain,
            top_span: Some(inst.top_span.clone().unwrap_or_else(|| self.span(st, head))),
            local_models: HashMap::new(),
        };
        self.elab_def(child, &mut sub)
    }

    /// Leading node words of a card: exactly `n` are needed.
    fn nodes<'i>(
        &self,
        st: &Stmt,
        head: &Tok,
        items: &'i [Item],
        n: usize,
        total_positional: usize,
    ) -> Result<Vec<&'i str>, SpiceError> {
        let lead = items
            .iter()
            .take_while(|i| matches!(i, Item::Word(_)))
            .count();
        let positional = items
            .iter()
            .take_while(|i| matches!(i, Item::Word(_) | Item::Expr(..)))
            .count();
        if lead < n || positional < total_positional {
            return Err(SpiceError::PinCount {
                name: head.text.to_string(),
                expected: n,
                found: lead.min(positional.saturating_sub(total_positional - n)),
                span: self.span(st, head),
            });
        }
        // A control character (a NUL from a corrupted file) in a node name cannot be printed
        // or matched by ngspice (which stops reading the line at a NUL): refuse it, located.
        for it in &items[..n] {
            if let Some(w) = it.word() {
                if let Some(p) = w.bytes().position(|b| b.is_ascii_control()) {
                    let t = it.tok();
                    return Err(SpiceError::Syntax {
                        msg: format!(
                            "node name contains the control character 0x{:02x}",
                            w.as_bytes()[p]
                        ),
                        span: self.ld.span(st.line, t.off + p as u32, 1),
                    });
                }
            }
        }
        Ok(items[..n].iter().filter_map(Item::word).collect())
    }

    fn unexpected(&self, st: &Stmt, item: &Item) -> SpiceError {
        self.syntax(st, item.tok(), &format!("unexpected `{}`", item.tok().text))
    }

    fn element(
        &mut self,
        def: usize,
        inst: &mut Inst,
        st: &Stmt,
        head: &Tok,
        items: &[Item],
        letter: u8,
    ) -> Result<ElementKind, SpiceError> {
        let scope = inst.scope;
        let two = |e: &Self, n: &[&str]| [e.map_node(inst, n[0]), e.map_node(inst, n[1])];
        Ok(match letter {
            b'r' => {
                let n = self.nodes(st, head, items, 2, 2)?;
                let mut value = None;
                let mut m = 1.0;
                for item in &items[2..] {
                    match item {
                        Item::Kv(k, v) => match k.text {
                            "r" | "resistance" => value = Some(self.eval_item(v, scope, st.line)?),
                            "m" => m = self.eval_item(v, scope, st.line)?,
                            "tc" | "tc1" | "tc2" | "ac" | "noisy" => {
                                let sp = self.span(st, k);
                                self.warn(sp, &format!("resistor parameter `{}` ignored", k.text));
                            }
                            other => {
                                return Err(SpiceError::Unsupported {
                                    what: format!("resistor parameter `{other}`"),
                                    span: self.span(st, k),
                                })
                            }
                        },
                        Item::Word(_) | Item::Expr(..) if value.is_none() => {
                            value = Some(self.eval_item(item, scope, st.line)?)
                        }
                        Item::Word(t)
                            if items
                                .iter()
                                .any(|p| matches!(p, Item::Expr(e, _) if e.off + e.len == t.off)) =>
                        {
                            return Err(self.syntax(
                                st,
                                t,
                                "a suffix after `{…}` is not allowed (ngspice rejects it too): write `{x*1k}`",
                            ))
                        }
                        Item::Word(t) => {
                            return Err(SpiceError::Unsupported {
                                what: format!("resistor models (`{}`)", t.text),
                                span: self.span(st, t),
                            })
                        }
                        other => return Err(self.unexpected(st, other)),
                    }
                }
                let Some(mut r) = value else {
                    return Err(SpiceError::BadValue {
                        msg: "resistor needs a value".into(),
                        span: self.span(st, head),
                    });
                };
                if m <= 0.0 {
                    return Err(SpiceError::BadValue {
                        msg: "`m` must be positive".into(),
                        span: self.span(st, head),
                    });
                }
                r /= m;
                if r == 0.0 {
                    let sp = self.span(st, head);
                    self.warn(sp, "zero resistance set to 1 mOhm (as ngspice)");
                    r = 1e-3;
                }
                ElementKind::Resistor {
                    n: two(self, &n),
                    r_ohm: r,
                }
            }
            b'v' | b'i' => {
                let n = self.nodes(st, head, items, 2, 2)?;
                let dc = self.source_value(st, head, &items[2..], scope)?;
                if letter == b'v' {
                    ElementKind::VSource {
                        n: two(self, &n),
                        dc_v: dc,
                    }
                } else {
                    ElementKind::ISource {
                        n: two(self, &n),
                        dc_a: dc,
                    }
                }
            }
            b'e' | b'g' => {
                self.reject_forms(st, items, 4)?;
                let n = self.nodes(st, head, items, 4, 5)?;
                if let Some(extra) = items.get(5) {
                    return Err(self.unexpected(st, extra));
                }
                let gain = self.eval_item(&items[4], scope, st.line)?;
                let out = two(self, &n[..2]);
                let ctrl = two(self, &n[2..]);
                if letter == b'e' {
                    ElementKind::Vcvs { out, ctrl, gain }
                } else {
                    ElementKind::Vccs {
                        out,
                        ctrl,
                        gm_siemens: gain,
                    }
                }
            }
            b'f' | b'h' => {
                self.reject_forms(st, items, 2)?;
                let n = self.nodes(st, head, items, 2, 4)?;
                let Some(Item::Word(vt)) = items.get(2) else {
                    return Err(self.syntax(
                        st,
                        head,
                        "expected a controlling voltage source name",
                    ));
                };
                if let Some(extra) = items.get(4) {
                    return Err(self.unexpected(st, extra));
                }
                let gain = self.eval_item(&items[3], scope, st.line)?;
                let vsrc = format!("{}{}", inst.prefix, normalize_element_name(vt.text));
                self.vsrc_refs.push((vsrc.clone(), self.span(st, vt)));
                let out = two(self, &n);
                if letter == b'f' {
                    ElementKind::Cccs { out, vsrc, gain }
                } else {
                    ElementKind::Ccvs {
                        out,
                        vsrc,
                        r_ohm: gain,
                    }
                }
            }
            b'b' => {
                let n = self.nodes(st, head, items, 2, 2)?;
                let mut found: Option<(bool, &Item, &Tok)> = None;
                for item in &items[2..] {
                    match item {
                        Item::Kv(k, v) if (k.text == "v" || k.text == "i") && found.is_none() => {
                            found = Some((k.text == "v", v, k))
                        }
                        Item::Kv(k, _) => {
                            return Err(SpiceError::Unsupported {
                                what: format!("B-source parameter `{}`", k.text),
                                span: self.span(st, k),
                            })
                        }
                        other => return Err(self.unexpected(st, other)),
                    }
                }
                let Some((is_v, value, _)) = found else {
                    return Err(self.syntax(st, head, "B source needs `V=expr` or `I=expr`"));
                };
                let (tok, expr) = match value {
                    Item::Expr(t, e) => (t, e.clone()),
                    Item::Word(t) => (
                        t,
                        match parse_number(t.text) {
                            Some(x) => Expr::Num(x),
                            None if is_ident(t.text) => Expr::Param(t.text.to_string()),
                            None => {
                                return Err(SpiceError::BadNumber {
                                    text: t.text.to_string(),
                                    span: self.span(st, t),
                                })
                            }
                        },
                    ),
                    other => return Err(self.unexpected(st, other)),
                };
                let expr = self.rename_expr(&expr, inst, st, tok)?;
                let n = two(self, &n);
                if is_v {
                    ElementKind::BVoltage { n, expr }
                } else {
                    ElementKind::BCurrent { n, expr }
                }
            }
            b'm' => self.mosfet(def, inst, st, head, items)?,
            _ => {
                return Err(SpiceError::Unsupported {
                    what: format!("element `{}`", head.text),
                    span: self.span(st, head),
                })
            }
        })
    }

    /// Reject `poly(…)`, `value=`, `table` and friends on E/G/F/H cards.
    fn reject_forms(&self, st: &Stmt, items: &[Item], n_nodes: usize) -> Result<(), SpiceError> {
        for item in items.iter().skip(n_nodes.min(items.len())) {
            let (t, what) = match item {
                Item::Kv(k, _) => (k, k.text),
                Item::Word(t) => (t, t.text),
                Item::Group(t, _) => (t, "(…)"),
                _ => continue,
            };
            if matches!(
                what,
                "poly"
                    | "value"
                    | "vol"
                    | "cur"
                    | "table"
                    | "laplace"
                    | "freq"
                    | "(…)"
                    | "nand"
                    | "nor"
                    | "and"
                    | "or"
            ) {
                return Err(SpiceError::Unsupported {
                    what: format!("controlled-source form `{what}` (use a B source)"),
                    span: self.span(st, t),
                });
            }
        }
        Ok(())
    }

    fn source_value(
        &mut self,
        st: &Stmt,
        head: &Tok,
        rest: &[Item],
        scope: &Scope,
    ) -> Result<f64, SpiceError> {
        let mut dc = None;
        let mut tran0 = None;
        let mut i = 0;
        while i < rest.len() {
            let item = &rest[i];
            match item {
                Item::Word(t) if t.text == "dc" => {
                    let v = rest
                        .get(i + 1)
                        .ok_or_else(|| self.syntax(st, t, "`dc` needs a value"))?;
                    dc = Some(self.eval_item(v, scope, st.line)?);
                    i += 2;
                }
                Item::Kv(k, v) if k.text == "dc" => {
                    dc = Some(self.eval_item(v, scope, st.line)?);
                    i += 1;
                }
                Item::Word(t) if t.text == "ac" => {
                    let sp = self.span(st, t);
                    self.warn(sp, "AC specification ignored (DC analyses only)");
                    i += 1;
                    let mut k = 0;
                    while k < 2 && i < rest.len() {
                        let is_num = match &rest[i] {
                            Item::Word(w) => {
                                parse_number(w.text).is_some() || scope.get(w.text).is_some()
                            }
                            Item::Expr(..) => true,
                            _ => false,
                        };
                        if !is_num {
                            break;
                        }
                        i += 1;
                        k += 1;
                    }
                }
                Item::Kv(k, _) if k.text == "ac" => {
                    let sp = self.span(st, k);
                    self.warn(sp, "AC specification ignored (DC analyses only)");
                    i += 1;
                }
                Item::Word(t) if matches!(t.text, "pulse" | "sin" | "exp" | "pwl" | "sffm") => {
                    let Some(Item::Group(_, args)) = rest.get(i + 1) else {
                        return Err(SpiceError::Unsupported {
                            what: format!("`{}` without parentheses", t.text),
                            span: self.span(st, t),
                        });
                    };
                    let idx = if t.text == "pwl" { 1 } else { 0 };
                    if let Some(a) = args.get(idx) {
                        tran0 = Some(self.eval_item(a, scope, st.line)?);
                    }
                    let sp = self.span(st, t);
                    self.warn(
                        sp,
                        &format!(
                            "transient specification `{}` ignored (DC analyses only)",
                            t.text
                        ),
                    );
                    i += 2;
                }
                Item::Word(_) | Item::Expr(..) if dc.is_none() && tran0.is_none() => {
                    match self.eval_item(item, scope, st.line) {
                        Ok(v) => dc = Some(v),
                        Err(e) => {
                            if let Item::Word(t) = item {
                                if is_ident(t.text) && scope.get(t.text).is_none() {
                                    return Err(SpiceError::Unsupported {
                                        what: format!("source specification `{}`", t.text),
                                        span: self.span(st, t),
                                    });
                                }
                            }
                            return Err(e);
                        }
                    }
                    i += 1;
                }
                other => return Err(self.unexpected(st, other)),
            }
        }
        Ok(match (dc, tran0) {
            (Some(v), _) => v,
            (None, Some(v)) => v,
            (None, None) => {
                let sp = self.span(st, head);
                self.warn(sp, "source has no value; DC 0 assumed");
                0.0
            }
        })
    }

    /// B-source expression: substitute parameters, rename nodes and sources.
    fn rename_expr(
        &mut self,
        e: &Expr,
        inst: &Inst,
        st: &Stmt,
        tok: &Tok,
    ) -> Result<Expr, SpiceError> {
        Ok(match e {
            Expr::Num(x) => Expr::Num(*x),
            Expr::Param(p) => match inst.scope.get(p) {
                // Negative values as `-(x)`: that is how the writer's text reads back.
                Some(v) if v < 0.0 => Expr::Neg(Box::new(Expr::Num(-v))),
                Some(v) => Expr::Num(v + 0.0),
                None => {
                    return Err(SpiceError::UnknownParam {
                        name: p.clone(),
                        span: self.name_span(st.line, tok, p),
                    })
                }
            },
            Expr::V(a, b) => Expr::V(
                self.map_node(inst, a),
                b.as_ref().map(|b| self.map_node(inst, b)),
            ),
            Expr::I(v) => {
                let name = format!("{}{}", inst.prefix, normalize_element_name(v));
                self.vsrc_refs
                    .push((name.clone(), self.name_span(st.line, tok, v)));
                Expr::I(name)
            }
            Expr::Neg(a) => Expr::Neg(Box::new(self.rename_expr(a, inst, st, tok)?)),
            Expr::Bin(op, a, b) => Expr::bin(
                *op,
                self.rename_expr(a, inst, st, tok)?,
                self.rename_expr(b, inst, st, tok)?,
            ),
            Expr::Call(f, args) => {
                let mut v = Vec::with_capacity(args.len());
                for a in args {
                    v.push(self.rename_expr(a, inst, st, tok)?);
                }
                Expr::Call(*f, v)
            }
        })
    }

    fn mosfet(
        &mut self,
        def: usize,
        inst: &mut Inst,
        st: &Stmt,
        head: &Tok,
        items: &[Item],
    ) -> Result<ElementKind, SpiceError> {
        let words: Vec<&Tok> = items
            .iter()
            .take_while(|i| matches!(i, Item::Word(_)))
            .map(Item::tok)
            .collect();
        if words.len() != 5 {
            return Err(SpiceError::PinCount {
                name: head.text.to_string(),
                expected: 4,
                found: words.len().saturating_sub(1),
                span: self.span(st, head),
            });
        }
        let mtok = words[4];
        let (model_stmt, global) =
            self.find_model(def, mtok.text)
                .ok_or_else(|| SpiceError::UnknownModel {
                    name: mtok.text.to_string(),
                    span: self.span(st, mtok),
                })?;
        let model = if global {
            match self.global_models.get(&model_stmt) {
                Some(m) => m.clone(),
                None => {
                    // Global models see the global parameters only.
                    let mut sc = inst.scope;
                    while let Some(p) = sc.parent {
                        sc = p;
                    }
                    let m = self.eval_model(model_stmt, sc, "", st, mtok)?;
                    self.global_models.insert(model_stmt, m.clone());
                    m
                }
            }
        } else {
            match inst.local_models.get(&model_stmt) {
                Some(m) => m.clone(),
                None => {
                    let m = self.eval_model(model_stmt, inst.scope, &inst.prefix, st, mtok)?;
                    inst.local_models.insert(model_stmt, m.clone());
                    m
                }
            }
        };
        let scope = inst.scope;
        let mut w = self.defw_m;
        let mut l = self.defl_m;
        for item in &items[5..] {
            match item {
                Item::Kv(k, v) => match k.text {
                    "w" => w = self.eval_item(v, scope, st.line)?,
                    "l" => l = self.eval_item(v, scope, st.line)?,
                    "m" => {
                        let m = self.eval_item(v, scope, st.line)?;
                        if m != 1.0 {
                            return Err(SpiceError::Unsupported {
                                what: "MOSFET multiplier `m` other than 1".into(),
                                span: self.span(st, k),
                            });
                        }
                    }
                    "ad" | "as" | "pd" | "ps" | "nrd" | "nrs" => {}
                    other => {
                        return Err(SpiceError::Unsupported {
                            what: format!("MOSFET instance parameter `{other}`"),
                            span: self.span(st, k),
                        })
                    }
                },
                Item::Word(t) if t.text == "off" => {}
                other => return Err(self.unexpected(st, other)),
            }
        }
        if !(w > 0.0 && l > 0.0) {
            return Err(SpiceError::BadValue {
                msg: "MOSFET W and L must be positive".into(),
                span: self.span(st, head),
            });
        }
        if l - 2.0 * model.ld_m <= 0.0 {
            return Err(SpiceError::BadValue {
                msg: "effective channel length L - 2*LD is not positive".into(),
                span: self.span(st, head),
            });
        }
        let n: Vec<String> = words[..4]
            .iter()
            .map(|t| self.map_node(inst, t.text))
            .collect();
        let mut it = n.into_iter();
        Ok(ElementKind::Mosfet {
            d: it.next().unwrap_or_default(),
            g: it.next().unwrap_or_default(),
            s: it.next().unwrap_or_default(),
            b: it.next().unwrap_or_default(),
            model: Box::new(model),
            w_m: w,
            l_m: l,
        })
    }

    fn eval_model(
        &mut self,
        model_stmt: usize,
        scope: &Scope,
        prefix: &str,
        use_st: &Stmt,
        use_tok: &Tok,
    ) -> Result<MosModel, SpiceError> {
        let ld = self.ld;
        let st = &ld.stmts[model_stmt];
        let Some((_, items)) = self.card(st) else {
            return Err(self.syntax(use_st, use_tok, "bad model"));
        };
        let name = items[0].tok();
        let ty = items[1].tok();
        let nmos = match ty.text {
            "nmos" => true,
            "pmos" => false,
            other => {
                return Err(SpiceError::Unsupported {
                    what: format!("model type `{other}` for a MOSFET (nmos or pmos level 1 only)"),
                    span: self.span(st, ty),
                })
            }
        };
        let mut kvs: Vec<(&Tok, &Item)> = Vec::new();
        for item in &items[2..] {
            match item {
                Item::Kv(k, v) => kvs.push((k, v)),
                Item::Group(_, inner) => {
                    for it in inner {
                        match it {
                            Item::Kv(k, v) => kvs.push((k, v)),
                            other => {
                                return Err(self.syntax(st, other.tok(), "expected `name=value`"))
                            }
                        }
                    }
                }
                other => return Err(self.syntax(st, other.tok(), "expected `name=value`")),
            }
        }
        let mut m = MosModel {
            name: format!("{prefix}{}", name.text),
            nmos,
            ..MosModel::default()
        };
        let mut kp_given = false;
        let mut tox_given = false;
        let mut ignored: Vec<&str> = Vec::new();
        for (k, v) in kvs {
            let x = self.eval_item(v, scope, st.line)?;
            match k.text {
                "level" => {
                    if x != 1.0 {
                        return Err(SpiceError::Unsupported {
                            what: format!("MOSFET level {x} (level 1 only)"),
                            span: self.span(st, v.tok()),
                        });
                    }
                }
                "vto" | "vt0" => m.vto_v = x,
                "kp" => {
                    if x < 0.0 {
                        let sp = self.span(st, v.tok());
                        self.warn(
                            sp,
                            &format!(
                                "KP = {x:e} A/V² is negative: the transistor's current flows \
                                 against its bias (ngspice accepts it too)"
                            ),
                        );
                    }
                    m.kp_a_per_v2 = x;
                    kp_given = true
                }
                "lambda" => m.lambda_per_v = x,
                "gamma" => m.gamma_sqrt_v = x,
                "phi" => m.phi_v = x,
                "is" => m.is_a = x,
                "ld" => m.ld_m = x,
                "tox" => tox_given = true,
                "uo" | "u0" | "cgso" | "cgdo" | "cgbo" | "cbd" | "cbs" | "cj" | "mj" | "cjsw"
                | "mjsw" | "pb" | "fc" | "kf" | "af" => ignored.push(k.text),
                "tnom" => {
                    if x != 27.0 {
                        return Err(SpiceError::Unsupported {
                            what: "TNOM other than 27 °C".into(),
                            span: self.span(st, k),
                        });
                    }
                }
                other => {
                    return Err(SpiceError::Unsupported {
                        what: format!(
                        "MOSFET model parameter `{other}` (level 1: VTO KP LAMBDA GAMMA PHI IS LD)"
                    ),
                        span: self.span(st, k),
                    })
                }
            }
        }
        if tox_given && !kp_given {
            return Err(SpiceError::Unsupported {
                what: "KP derived from TOX/UO; give KP explicitly".into(),
                span: self.span(st, name),
            });
        }
        if m.phi_v.is_nan() || m.phi_v <= 0.0 {
            return Err(SpiceError::BadValue {
                msg: "PHI must be positive".into(),
                span: self.span(st, name),
            });
        }
        if !ignored.is_empty() && self.warned_models.insert(model_stmt) {
            let sp = self.span(st, name);
            self.warn(
                sp,
                &format!(
                    "model parameters without DC effect ignored: {}",
                    ignored.join(" ")
                ),
            );
        }
        Ok(m)
    }

    /// Element names must be unique; controlling sources must exist.
    fn check_names(&self) -> Result<(), SpiceError> {
        let mut seen: FastMap<&str, usize> =
            FastMap::with_capacity_and_hasher(self.elements.len(), Default::default());
        for (i, el) in self.elements.iter().enumerate() {
            if let Some(first) = seen.insert(&el.name, i) {
                return Err(SpiceError::Duplicate {
                    name: el.name.clone(),
                    first: Box::new(self.elements[first].span.clone()),
                    span: el.span.clone(),
                });
            }
        }
        for (name, span) in &self.vsrc_refs {
            let ok = seen
                .get(name.as_str())
                .is_some_and(|&i| matches!(self.elements[i].kind, ElementKind::VSource { .. }));
            if !ok {
                return Err(SpiceError::UnknownSource {
                    name: name.clone(),
                    expected: "voltage source".into(),
                    span: span.clone(),
                });
            }
        }
        Ok(())
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}
