//! Device model cards (`models/*.cir`) read by the one SPICE front end ([`crate::spice::read_card`]:
//! its number syntax, `.param` expressions and `.model` handling, errors located in the card), with
//! typed parameters: a device layer asks for what it needs ([`MemristorCard::need`]) and gets a
//! located error naming the card when a parameter is missing.
//!
//! Memristor card parameters (all optional, `.param name=value`):
//!
//! | name | field | meaning |
//! |---|---|---|
//! | `nl_k` | `nl_k_per_v` | sinh nonlinearity `I = g·sinh(k·v)/k` (1/V); 0 (default): linear |
//! | `g_lo`, `g_hi` | `g_lo_siemens`, `g_hi_siemens` | physical conductance window (S) |
//! | `g_stuck` | `g_stuck_siemens` | conductance of stuck devices (S) |
//! | `v_read` | `v_read_v` | read voltage (V) |
//! | `r_gw` | `program.r_gw_siemens_per_unit` | programming: conductance per weight unit, ΔG = R_gw·ΔW (S) |
//! | `r_vg` | `program.r_vg_v_per_siemens` | programming: gate voltage per conductance, ΔV_G = R_vg·ΔG (V/S) |
//! | `vg_min`, `vg_max` | `program.vg_min_v`, `program.vg_max_v` | SET gate-voltage bounds (V) |
//! | `v_set`, `v_reset` | `program.v_set_v`, `program.v_reset_v` | SET / RESET voltages (V) |
//! | `vg_reset` | `program.vg_reset_v` | gate voltage during RESET (V) |
//!
//! Other parameters are kept in `other` (and can be asked for by name); new typed fields go in
//! [`MemristorCard::from_contents`]. A transistor card holds one level-1 `.model` and optionally
//! `.param w=… l=…` ([`MosCard`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::netlist::MosModel;
use crate::span::Span;
use crate::spice::elab::CardContents;
use crate::spice::SpiceError;

/// Errors of a model card: the front end's (located in the card) or a bad or missing parameter.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error(transparent)]
    Spice(#[from] Box<SpiceError>),
    #[error("{}", .span.render(&format!("model card parameter `{name}`: {message}")))]
    Param {
        span: Span,
        name: String,
        message: String,
    },
    #[error(
        "model card {path}: parameter `{name}` is needed ({what}) but the card does not set it"
    )]
    Missing {
        path: String,
        name: String,
        what: String,
    },
    #[error("{path}: {message}")]
    Card { path: String, message: String },
}

/// Programming parameters of a memristor card (write path of a device layer).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProgrammingParams {
    pub r_gw_siemens_per_unit: Option<f64>,
    pub r_vg_v_per_siemens: Option<f64>,
    pub vg_min_v: Option<f64>,
    pub vg_max_v: Option<f64>,
    pub v_set_v: Option<f64>,
    pub v_reset_v: Option<f64>,
    pub vg_reset_v: Option<f64>,
}

/// A memristor model card, typed.
#[derive(Debug, Clone, Serialize)]
pub struct MemristorCard {
    pub path: PathBuf,
    /// sinh nonlinearity `I = g·sinh(k·v)/k` (1/V); 0 = linear (`R` cells).
    pub nl_k_per_v: f64,
    /// Physical window of the device, when the card states it.
    pub g_lo_siemens: Option<f64>,
    pub g_hi_siemens: Option<f64>,
    pub g_stuck_siemens: Option<f64>,
    pub v_read_v: Option<f64>,
    pub program: ProgrammingParams,
    /// Parameters without a typed field (lower-case names).
    pub other: BTreeMap<String, f64>,
    /// Where every parameter is set in the card.
    #[serde(skip)]
    pub spans: BTreeMap<String, Span>,
}

fn read(path: &Path) -> Result<CardContents, CardError> {
    crate::spice::read_card(path).map_err(|e| CardError::Spice(Box::new(e)))
}

impl MemristorCard {
    /// Read and check a memristor card.
    pub fn load(path: &Path) -> Result<MemristorCard, CardError> {
        Self::from_contents(path, read(path)?)
    }

    /// The typed card of what the front end read.
    pub fn from_contents(path: &Path, c: CardContents) -> Result<MemristorCard, CardError> {
        let mut other: BTreeMap<String, f64> =
            c.params.iter().map(|(k, v)| (k.clone(), v.0)).collect();
        let spans: BTreeMap<String, Span> = c
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.1.clone()))
            .collect();
        let bad = |name: &str, message: &str| CardError::Param {
            span: spans.get(name).cloned().unwrap_or_default(),
            name: name.into(),
            message: message.into(),
        };
        // each typed parameter is taken out of `other` with its check
        let mut take = |name: &str, ok: fn(f64) -> bool, what: &str| match other.remove(name) {
            Some(v) if !ok(v) => Err(bad(name, &format!("must be {what}, got {v}"))),
            v => Ok(v),
        };
        let finite = |v: f64| v.is_finite();
        let pos = |v: f64| v.is_finite() && v > 0.0;
        let non_neg = |v: f64| v.is_finite() && v >= 0.0;
        let mut card = MemristorCard {
            path: path.to_path_buf(),
            nl_k_per_v: take("nl_k", non_neg, "finite and ≥ 0")?.unwrap_or(0.0),
            g_lo_siemens: take("g_lo", pos, "> 0")?,
            g_hi_siemens: take("g_hi", pos, "> 0")?,
            g_stuck_siemens: take("g_stuck", non_neg, "≥ 0")?,
            v_read_v: take("v_read", finite, "finite")?,
            program: ProgrammingParams {
                r_gw_siemens_per_unit: take("r_gw", pos, "> 0")?,
                r_vg_v_per_siemens: take("r_vg", finite, "finite")?,
                vg_min_v: take("vg_min", finite, "finite")?,
                vg_max_v: take("vg_max", finite, "finite")?,
                v_set_v: take("v_set", finite, "finite")?,
                v_reset_v: take("v_reset", finite, "finite")?,
                vg_reset_v: take("vg_reset", finite, "finite")?,
            },
            other,
            spans: BTreeMap::new(),
        };
        if let (Some(lo), Some(hi)) = (card.g_lo_siemens, card.g_hi_siemens) {
            if lo >= hi {
                return Err(bad(
                    "g_hi",
                    &format!("must exceed g_lo ({lo:e} S), got {hi:e} S"),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (card.program.vg_min_v, card.program.vg_max_v) {
            if lo > hi {
                return Err(bad(
                    "vg_max",
                    &format!("must be ≥ vg_min ({lo} V), got {hi} V"),
                ));
            }
        }
        card.spans = spans;
        Ok(card)
    }

    /// A parameter a device layer needs, by its card name (typed or not): its value, or an
    /// error naming the card, the parameter and what needs it.
    pub fn need(&self, name: &str, what: &str) -> Result<f64, CardError> {
        let p = &self.program;
        let typed = match name {
            "nl_k" => Some(self.nl_k_per_v),
            "g_lo" => self.g_lo_siemens,
            "g_hi" => self.g_hi_siemens,
            "g_stuck" => self.g_stuck_siemens,
            "v_read" => self.v_read_v,
            "r_gw" => p.r_gw_siemens_per_unit,
            "r_vg" => p.r_vg_v_per_siemens,
            "vg_min" => p.vg_min_v,
            "vg_max" => p.vg_max_v,
            "v_set" => p.v_set_v,
            "v_reset" => p.v_reset_v,
            "vg_reset" => p.vg_reset_v,
            other => self.other.get(other).copied(),
        };
        typed.ok_or_else(|| CardError::Missing {
            path: self.path.display().to_string(),
            name: name.into(),
            what: what.into(),
        })
    }
}

/// A transistor card: its level-1 `.model` (the first of the card) and optional `w` / `l`.
#[derive(Debug, Clone)]
pub struct MosCard {
    pub path: PathBuf,
    pub model: MosModel,
    pub w_m: Option<f64>,
    pub l_m: Option<f64>,
}

impl MosCard {
    pub fn load(path: &Path) -> Result<MosCard, CardError> {
        let c = read(path)?;
        let (model, _) = c.models.into_iter().next().ok_or_else(|| CardError::Card {
            path: path.display().to_string(),
            message: "no `.model` line".into(),
        })?;
        let get = |name: &str| -> Result<Option<f64>, CardError> {
            match c.params.get(name) {
                Some((v, _)) if v.is_finite() && *v > 0.0 => Ok(Some(*v)),
                Some((v, span)) => Err(CardError::Param {
                    span: span.clone(),
                    name: name.into(),
                    message: format!("must be > 0, got {v}"),
                }),
                None => Ok(None),
            }
        };
        Ok(MosCard {
            path: path.to_path_buf(),
            model,
            w_m: get("w")?,
            l_m: get("l")?,
        })
    }
}
