//! The elaborated, flat circuit description: what the SPICE front end (`crate::spice`) produces and
//! what the circuit layer (`crate::circuit`) builds its nodal equations from. Everything here is
//! already resolved: parameters substituted, subcircuits flattened with hierarchical names
//! (`x1.x2.node`, `x1.r5`), names lower-case, values in SI units.

use crate::expr::Expr;
use crate::span::Span;

/// Node name of ground (`0`; `gnd` is mapped to it by the front end).
pub const GROUND: &str = "0";

/// A hash map with a fast non-cryptographic hasher (foldhash), for name tables that are only
/// looked up, never iterated (element and node names of big netlists: SipHash showed in
/// profiles of the front end).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, PartialEq)]
pub struct Netlist {
    pub title: String,
    pub elements: Vec<Element>,
    /// Analyses in file order.
    pub analyses: Vec<Analysis>,
    pub options: SimOptions,
    /// Things the front end accepted but ignored (e.g. a `.control` block), rendered with location.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Hierarchical lower-case name, e.g. `r1`, `x1.m3`.
    pub name: String,
    pub kind: ElementKind,
    /// Where the element's card stands (the instance line for subcircuit members).
    pub span: Span,
}

/// Level-1 (Shichman–Hodges) MOSFET model parameters, SI units.
#[derive(Debug, Clone, PartialEq)]
pub struct MosModel {
    pub name: String,
    /// true for NMOS, false for PMOS.
    pub nmos: bool,
    pub vto_v: f64,
    /// Transconductance parameter KP (A/V²).
    pub kp_a_per_v2: f64,
    pub lambda_per_v: f64,
    pub gamma_sqrt_v: f64,
    pub phi_v: f64,
    /// Bulk junction saturation current IS (A).
    pub is_a: f64,
    /// Lateral diffusion LD (m).
    pub ld_m: f64,
}

impl Default for MosModel {
    /// ngspice's level-1 defaults.
    fn default() -> Self {
        MosModel {
            name: String::new(),
            nmos: true,
            vto_v: 0.0,
            kp_a_per_v2: 2e-5,
            lambda_per_v: 0.0,
            gamma_sqrt_v: 0.0,
            phi_v: 0.6,
            is_a: 1e-14,
            ld_m: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ElementKind {
    /// `R n+ n- value`.
    Resistor { n: [String; 2], r_ohm: f64 },
    /// `V n+ n- [DC] value`.
    VSource { n: [String; 2], dc_v: f64 },
    /// `I n+ n- [DC] value`: current flows from n+ through the source to n-.
    ISource { n: [String; 2], dc_a: f64 },
    /// `E out+ out- ctrl+ ctrl- gain`.
    Vcvs {
        out: [String; 2],
        ctrl: [String; 2],
        gain: f64,
    },
    /// `G out+ out- ctrl+ ctrl- gm`: current gm·V(ctrl) flows from out+ through the source to out-.
    Vccs {
        out: [String; 2],
        ctrl: [String; 2],
        gm_siemens: f64,
    },
    /// `F out+ out- vsrc gain`: current gain·I(vsrc) from out+ through the source to out-.
    Cccs {
        out: [String; 2],
        vsrc: String,
        gain: f64,
    },
    /// `H out+ out- vsrc r`: V(out+,out-) = r·I(vsrc).
    Ccvs {
        out: [String; 2],
        vsrc: String,
        r_ohm: f64,
    },
    /// `B n+ n- V=expr`.
    BVoltage { n: [String; 2], expr: Expr },
    /// `B n+ n- I=expr`: current flows from n+ through the source to n-.
    BCurrent { n: [String; 2], expr: Expr },
    /// `M d g s b model W= L=`.
    Mosfet {
        d: String,
        g: String,
        s: String,
        b: String,
        /// Boxed: inline, this variant made every element (resistors included) 280 bytes.
        model: Box<MosModel>,
        w_m: f64,
        l_m: f64,
    },
}

impl ElementKind {
    /// The nodes the element touches (controlling nodes included).
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            ElementKind::Resistor { n, .. }
            | ElementKind::VSource { n, .. }
            | ElementKind::ISource { n, .. }
            | ElementKind::BVoltage { n, .. }
            | ElementKind::BCurrent { n, .. } => vec![&n[0], &n[1]],
            ElementKind::Vcvs { out, ctrl, .. } | ElementKind::Vccs { out, ctrl, .. } => {
                vec![&out[0], &out[1], &ctrl[0], &ctrl[1]]
            }
            ElementKind::Cccs { out, .. } | ElementKind::Ccvs { out, .. } => vec![&out[0], &out[1]],
            ElementKind::Mosfet { d, g, s, b, .. } => vec![d, g, s, b],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Analysis {
    Op {
        span: Span,
    },
    /// `.dc SRC start stop step` sweeping an independent V or I source.
    Dc {
        src: String,
        start: f64,
        stop: f64,
        step: f64,
        span: Span,
    },
}

/// `.options` values (ngspice defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    pub reltol: f64,
    pub abstol_a: f64,
    pub vntol_v: f64,
    pub gmin_siemens: f64,
    /// Newton iteration limit for `.op` (ITL1); `.dc` points use ITL2.
    pub itl1: usize,
    pub itl2: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            reltol: 1e-3,
            abstol_a: 1e-12,
            vntol_v: 1e-6,
            gmin_siemens: 1e-12,
            itl1: 100,
            itl2: 50,
        }
    }
}
