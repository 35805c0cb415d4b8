//! The sim engine: software kernels bit-exact with the hardware ones, the embedded
//! default and the reference for every other engine. It serves kernel manifests like
//! the hardware engines; each kernel names its software implementation (`sim = ...`).

mod kernels;

use std::sync::{Arc, RwLock};

use vfpga_proto::{ArgKind, ElemType, CAP_ENGINE_SIM};

use crate::{Call, Catalog, Engine, EngineError, EngineInfo, Kernel, Library, ManifestError};

type RunFn = fn(&Call<'_>) -> Result<(), EngineError>;
type CostFn = fn(&Call<'_>) -> u64;

/// A software implementation and the argument shape it expects.
struct SimImpl {
    name: &'static str,
    shape: &'static [(ArgKind, ElemType)],
    run: RunFn,
    cost: CostFn,
}

use ArgKind::{In, Out, Scalar};
use ElemType::{F32, I16, I32, U32, U64, U8};

const IMPLS: &[SimImpl] = &[
    SimImpl {
        name: "vadd_u32",
        shape: &[(In, U32), (In, U32), (Out, U32), (Scalar, U32)],
        run: kernels::vadd::run_u32,
        cost: kernels::vadd::cost,
    },
    SimImpl {
        name: "vadd_f32",
        shape: &[(In, F32), (In, F32), (Out, F32), (Scalar, U32)],
        run: kernels::vadd::run_f32,
        cost: kernels::vadd::cost,
    },
    SimImpl {
        name: "mmult_f32",
        shape: &[
            (In, F32),
            (In, F32),
            (Out, F32),
            (Scalar, U32),
            (Scalar, U32),
            (Scalar, U32),
        ],
        run: kernels::mmult::run,
        cost: kernels::mmult::cost,
    },
    SimImpl {
        name: "fir_i16",
        shape: &[
            (In, I16),
            (In, I32),
            (Out, I32),
            (Scalar, U32),
            (Scalar, U32),
        ],
        run: kernels::fir::run,
        cost: kernels::fir::cost,
    },
    SimImpl {
        name: "sha256",
        shape: &[(In, U8), (Out, U8), (Scalar, U64)],
        run: kernels::sha256::run,
        cost: kernels::sha256::cost,
    },
    SimImpl {
        name: "sobel_u8",
        shape: &[(In, U8), (Out, U8), (Scalar, U32), (Scalar, U32)],
        run: kernels::sobel::run,
        cost: kernels::sobel::cost,
    },
];

/// Names of the software implementations a manifest's `sim = ...` may name.
pub fn implementations() -> impl Iterator<Item = &'static str> {
    IMPLS.iter().map(|i| i.name)
}

fn implementation(k: &Kernel) -> Option<&'static SimImpl> {
    let name = k.sim.as_deref()?;
    IMPLS.iter().find(|i| i.name == name)
}

/// Checks that every kernel of `catalog` has a software implementation whose argument
/// shape matches its signature.
pub fn check_catalog(catalog: &Catalog) -> Result<(), String> {
    for k in &catalog.kernels {
        let name = &k.sig.name;
        let imp = implementation(k).ok_or_else(|| match &k.sim {
            None => format!("kernel `{name}` names no software implementation (sim = ...)"),
            Some(s) => format!(
                "kernel `{name}`: no software implementation `{s}` (known: {})",
                implementations().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let shape: Vec<_> = k.sig.args.iter().map(|a| (a.kind, a.ty)).collect();
        if shape != imp.shape {
            return Err(format!(
                "kernel `{name}`: arguments do not match implementation `{}`",
                imp.name
            ));
        }
    }
    Ok(())
}

/// The software engine.
#[derive(Debug)]
pub struct SimEngine {
    catalog: RwLock<Arc<Catalog>>,
    library: Option<Library>,
}

impl SimEngine {
    /// The engine serving the built-in catalogue, loading others from `library`.
    pub fn new(library: Option<Library>) -> Result<Self, ManifestError> {
        let catalog = Catalog::from_toml(include_str!("builtin.toml"), "built-in")?;
        Self::with_catalog(catalog, library)
    }

    /// The engine serving `catalog`.
    pub fn with_catalog(catalog: Catalog, library: Option<Library>) -> Result<Self, ManifestError> {
        check_catalog(&catalog).map_err(|message| ManifestError::Invalid {
            origin: catalog.name.clone(),
            message,
        })?;
        Ok(Self {
            catalog: RwLock::new(Arc::new(catalog)),
            library,
        })
    }
}

impl Engine for SimEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: "sim",
            capability: CAP_ENGINE_SIM,
            can_load: self.library.is_some(),
        }
    }

    fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn run(&self, kernel: &Kernel, call: &Call<'_>) -> Result<(), EngineError> {
        let current = match self.catalog.read() {
            Ok(c) => c.generation,
            Err(poisoned) => poisoned.into_inner().generation,
        };
        if kernel.generation != current {
            return Err(EngineError::KernelGone(kernel.sig.name.clone()));
        }
        let imp = implementation(kernel).ok_or(EngineError::Unsupported(
            "kernel has no software implementation",
        ))?;
        (imp.run)(call)
    }

    fn cost(&self, kernel: &Kernel, call: &Call<'_>) -> u64 {
        implementation(kernel).map_or(0, |i| (i.cost)(call))
    }

    fn load_bitstream(&self, name: &str) -> Result<Arc<Catalog>, EngineError> {
        let library = self
            .library
            .as_ref()
            .ok_or(EngineError::Unsupported("no bitstream library configured"))?;
        let catalog = library.open(name)?;
        check_catalog(&catalog).map_err(EngineError::Failed)?;
        let catalog = Arc::new(catalog);
        match self.catalog.write() {
            Ok(mut c) => *c = catalog.clone(),
            Err(poisoned) => *poisoned.into_inner() = catalog.clone(),
        }
        Ok(catalog)
    }
}
