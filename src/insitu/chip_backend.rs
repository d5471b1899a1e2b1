//! The chip backend: a [`MatmulBackend`] that owns a programmed [`Chip`] and its write rule.
//!
//! * [`MatmulBackend::read`] reads every cell (drift to `ctx.age_seconds` after the chip's last
//!   write, read noise from `ctx.read_rng`) and solves the compiled arrays on those conductances
//!   (the circuit backend, [`CircuitBackend::set_chip_conductances`]); products and read-backs use
//!   that read until the next `read` or `update`. A forward pass with no read held takes one.
//! * [`MatmulBackend::update`] turns one step per slot into device writes by the paper's rule
//!   ([`Rule::apply`]; write noise from `ctx.write_rng`; the chip's clock advances by
//!   `ctx.idle_seconds` and then by the programming time) and reports cells, pulses and skipped
//!   weights. A [`Update::Target`] writes its difference from the weights of the read held.
//! * [`MatmulBackend::save_state`] / [`MatmulBackend::load_state`] save and restore the chip
//!   directory ([`Chip::save`], [`Chip::load`] checked against the network file's hash).
//!
//! The weight scale (siemens per weight unit) of every matrix is frozen at the weights the chip
//! was first programmed with (`scale_weights`): the circuit backend is prepared with them once, so
//! an update is a conductance change and a read decodes conductances in the same units.

use std::path::Path;

use super::rules::Rule;
use super::{slot_scales, CellMap, InsituError, Setup};
use crate::device::chip::{network_hash, Chip};
use crate::device::DeviceSpec;
use crate::net::spec::HardwareSpec;
use crate::nn::backend::{
    BackendError, ForwardCtx, LayerId, MatmulBackend, Update, UpdateCtx, UpdateReport,
};
use crate::nn::circuit::CircuitBackend;
use crate::nn::matrix::Matrix;
use crate::nn::model::Model;

/// A programmed chip, its write rule and the solved arrays of its last read.
pub struct ChipBackend {
    chip: Chip,
    circuit: CircuitBackend,
    rule: Rule,
    map: CellMap,
    /// Siemens per weight unit of every slot's pairs (frozen).
    scales_siemens: Vec<f64>,
    /// Slots the rule writes (hybrid: the `trainable` layers; otherwise all).
    trainable: Vec<bool>,
    /// The weights of the first programming (their encoder scales are `scales_siemens`).
    scale_weights: Vec<Matrix>,
    hw: HardwareSpec,
    spec: DeviceSpec,
    network_sha256: String,
    /// The circuit backend holds a read of the chip as it is now.
    read_held: bool,
}

fn other(e: impl std::fmt::Display) -> BackendError {
    BackendError::Other(e.to_string())
}

impl ChipBackend {
    /// The backend of `chip` (programmed from `scale_weights` for the network of `setup`; `model`
    /// gives the slot shapes) writing the slots marked in `trainable` by the run's rule.
    pub fn new(
        setup: &Setup,
        model: &Model,
        chip: Chip,
        scale_weights: Vec<Matrix>,
        map: CellMap,
        trainable: Vec<bool>,
    ) -> Result<ChipBackend, InsituError> {
        if trainable.len() != model.slots.len() || scale_weights.len() != model.slots.len() {
            return Err(InsituError::Usage(format!(
                "chip backend: {} slots, {} scale matrices, {} trainable flags",
                model.slots.len(),
                scale_weights.len(),
                trainable.len()
            )));
        }
        let circuit = setup.chip_backend(model, &scale_weights)?;
        let scales_siemens = slot_scales(&map, &setup.programmed(model, &scale_weights)?);
        // every saved chip carries the weights its conductances decode with (`netc eval --chip`)
        let mut chip = chip;
        chip.manifest.scale_weights = Some(scale_weights.clone());
        Ok(ChipBackend {
            chip,
            circuit,
            rule: Rule::of(setup)?,
            map,
            scales_siemens,
            trainable,
            scale_weights,
            hw: setup.file.hardware.clone(),
            spec: setup.spec.clone(),
            network_sha256: network_hash(&setup.text),
            read_held: false,
        })
    }

    /// The chip as it is now.
    pub fn chip(&self) -> &Chip {
        &self.chip
    }

    /// Give the chip back.
    pub fn into_chip(self) -> Chip {
        self.chip
    }

    /// The write rule of [`MatmulBackend::update`] (its optimiser side: [`Rule::deltas`]).
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The weights of the first programming (frozen encoder scales).
    pub fn scale_weights(&self) -> &[Matrix] {
        &self.scale_weights
    }
}

impl MatmulBackend for ChipBackend {
    fn name(&self) -> String {
        "chip".into()
    }

    /// A chip is programmed when it is made and changed by [`MatmulBackend::update`].
    fn prepare(&mut self, id: LayerId, _w: &Matrix) -> Result<(), BackendError> {
        Err(other(format!(
            "slot {id}: the chip backend is not prepared with weights: it holds a programmed chip \
             and is written by updates"
        )))
    }

    fn read(&mut self, ctx: &mut ForwardCtx) -> Result<(), BackendError> {
        if !(ctx.age_seconds.is_finite() && ctx.age_seconds >= 0.0) {
            return Err(other(format!(
                "read age must be finite and ≥ 0 s, got {}",
                ctx.age_seconds
            )));
        }
        let g = self.chip.read_with(ctx.age_seconds, ctx.read_rng);
        self.circuit.set_chip_conductances(g)?;
        self.read_held = true;
        Ok(())
    }

    fn forward(
        &mut self,
        id: LayerId,
        x: &Matrix,
        ctx: &mut ForwardCtx,
    ) -> Result<Matrix, BackendError> {
        if !self.read_held {
            self.read(ctx)?;
        }
        self.circuit.forward(id, x, ctx)
    }

    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError> {
        if !self.read_held {
            return Err(other(
                "the chip backend holds no read (read it before reading weights back)",
            ));
        }
        self.circuit.effective_weights(id)
    }

    fn update(
        &mut self,
        updates: Vec<(LayerId, Update)>,
        ctx: &mut UpdateCtx,
    ) -> Result<UpdateReport, BackendError> {
        if !(ctx.idle_seconds.is_finite() && ctx.idle_seconds >= 0.0) {
            return Err(other(format!(
                "idle time must be finite and ≥ 0 s, got {}",
                ctx.idle_seconds
            )));
        }
        let n = self.scale_weights.len();
        let mut deltas: Vec<Matrix> = self
            .scale_weights
            .iter()
            .map(|w| Matrix::zeros(w.rows, w.cols))
            .collect();
        let mut write = vec![false; n];
        for (id, u) in updates {
            if id >= n {
                return Err(BackendError::NotPrepared(id));
            }
            let (rows, cols) = (deltas[id].rows, deltas[id].cols);
            deltas[id] = match u {
                Update::Step(d) if (d.rows, d.cols) == (rows, cols) => d,
                Update::Target(_) => u.step(id, &self.effective_weights(id)?)?,
                u => u.step(id, &Matrix::zeros(rows, cols))?,
            };
            write[id] = self.trainable[id];
        }
        self.chip.manifest.now_seconds += ctx.idle_seconds;
        let stats = self
            .rule
            .apply(
                &self.hw,
                &self.spec,
                &mut self.chip,
                &self.map,
                &self.scales_siemens,
                &deltas,
                &write,
                ctx.write_rng,
            )
            .map_err(other)?;
        // the devices changed: the next product reads them again
        self.read_held = false;
        Ok(UpdateReport {
            cells_written: stats.cells_written,
            pulses: stats.pulses,
            skipped: stats.skipped,
        })
    }

    /// The chip directory (written whole or not at all).
    fn save_state(&self, dir: &Path) -> Result<(), BackendError> {
        self.chip.save(dir).map_err(|e| BackendError::State {
            path: dir.into(),
            message: e.to_string(),
        })
    }

    /// A chip saved by [`MatmulBackend::save_state`] for the same network file and arrays.
    fn load_state(&mut self, dir: &Path) -> Result<(), BackendError> {
        let state = |message: String| BackendError::State {
            path: dir.into(),
            message,
        };
        let chip = Chip::load(dir, Some(&self.network_sha256)).map_err(|e| state(e.to_string()))?;
        let shape = |c: &Chip| -> Vec<(usize, usize)> {
            c.arrays.iter().map(|a| (a.rows, a.cols)).collect()
        };
        if shape(&chip) != shape(&self.chip) {
            return Err(state(format!(
                "the saved chip has arrays {:?}, this backend's chip {:?}",
                shape(&chip),
                shape(&self.chip)
            )));
        }
        self.chip = chip;
        self.read_held = false;
        Ok(())
    }
}
