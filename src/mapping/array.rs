//! The one lowering from hardware to circuit: a `.net` hardware description, the geometry of one
//! physical array and its conductance state become a structured array ([`Crossbar`]). The circuit
//! backend (`nn::circuit`), `netc compile` (through [`super::emit`]) and every other caller build
//! their arrays here; [`crate::xbar::emit::write_array`] is the one writer from that array to a
//! netlist (docs/architecture.md, "One lowering").

use super::weights::ArrayConductances;
use super::MappingError;
use crate::circuit::mos1::Mos1;
use crate::net::spec::{CellKind as NetCell, HardwareSpec, SenseSpec};
use crate::xbar::{CellKind, Crossbar, SenseKind};

/// The structured array of a `rows × cols` array of `hw` holding conductances `g_siemens`
/// (row-major, S). Word and bit lines both get `r_wire`; driver, sense, cell kind, access
/// transistor (with `v_gate` on every row) and sense amplifier are the declared ones.
pub fn crossbar(
    hw: &HardwareSpec,
    rows: usize,
    cols: usize,
    g_siemens: &[f64],
) -> Result<Crossbar, MappingError> {
    let fail = |message: String| MappingError::Lower {
        span: hw.span.clone(),
        message,
    };
    let k_per_v = hw.nl_k_per_v();
    let cell = match hw.cell {
        NetCell::Passive if k_per_v > 0.0 => CellKind::Sinh { k_per_v },
        NetCell::Passive => CellKind::Linear,
        NetCell::OneT1R => {
            if k_per_v > 0.0 {
                return Err(fail(format!(
                    "a 1t1r cell with a nonlinear memristor (nl_k = {k_per_v} /V) is not \
                     supported by the crossbar engine; use a card with nl_k = 0"
                )));
            }
            let t = hw
                .transistor
                .as_ref()
                .ok_or_else(|| fail("a 1t1r array needs `transistor \"card\"`".into()))?;
            CellKind::OneT1R {
                mos: Mos1 {
                    model: t.model.clone(),
                    w_m: t.w_m,
                    l_m: t.l_m,
                },
                v_gate_v: vec![hw.v_gate_v; rows],
            }
        }
    };
    let sense = match hw.sense {
        SenseSpec::Ideal => SenseKind::VirtualGround,
        SenseSpec::Opamp {
            gain,
            vsat_v,
            r_feedback_ohm,
        } => SenseKind::Tia {
            gain,
            r_f_ohm: r_feedback_ohm,
            vsat_v,
        },
    };
    let xb = Crossbar {
        rows,
        cols,
        g_siemens: g_siemens.to_vec(),
        cell,
        r_word_ohm: hw.r_wire_ohm,
        r_bit_ohm: hw.r_wire_ohm,
        r_driver_ohm: hw.r_driver_ohm,
        r_sense_ohm: hw.r_sense_ohm,
        sense,
    };
    xb.validate().map_err(|e| fail(e.to_string()))?;
    Ok(xb)
}

/// [`crossbar`] of one programmed array.
pub fn crossbar_of(hw: &HardwareSpec, arr: &ArrayConductances) -> Result<Crossbar, MappingError> {
    crossbar(hw, arr.rows, arr.cols, &arr.g_siemens)
}
