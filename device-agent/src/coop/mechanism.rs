//! The ways a model can run, by name, and the precisions each accepts.
use crate::backend::Precision;
use crate::{Error, Result};

/// Where the layers of a model run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Mechanism {
    /// Every layer on the CPU (network-to-processor).
    #[serde(rename = "cpu")]
    Cpu,
    /// Every layer on the GPU (network-to-processor).
    #[serde(rename = "gpu")]
    Gpu,
    /// Each whole layer on its predicted-fastest processor.
    #[serde(rename = "layer-to-processor")]
    LayerToProcessor,
    /// μLayer: each layer split across both processors (channels or rows) where predicted
    /// faster, else on one.
    #[serde(rename = "ulayer")]
    Ulayer,
    /// μLayer with branch distribution for multi-branch modules.
    #[serde(rename = "ulayer+branch")]
    UlayerBranch,
}

/// Every mechanism with the precisions it runs, for help and error messages.
pub const VALID: &[(&str, &[Precision])] = &[
    ("cpu", &[Precision::F32, Precision::Quint8]),
    ("gpu", &[Precision::F32, Precision::F16, Precision::Quint8]),
    (
        "layer-to-processor",
        &[Precision::F32, Precision::F16, Precision::Quint8],
    ),
    (
        "ulayer",
        &[Precision::F32, Precision::F16, Precision::Quint8],
    ),
    (
        "ulayer+branch",
        &[Precision::F32, Precision::F16, Precision::Quint8],
    ),
];

/// The valid mechanism/precision combinations as one line.
pub fn valid_list() -> String {
    VALID
        .iter()
        .map(|(m, ps)| {
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            format!("{m} ({})", ps.join("|"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::Cpu,
        Mechanism::Gpu,
        Mechanism::LayerToProcessor,
        Mechanism::Ulayer,
        Mechanism::UlayerBranch,
    ];

    /// The mechanism's name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Cpu => "cpu",
            Mechanism::Gpu => "gpu",
            Mechanism::LayerToProcessor => "layer-to-processor",
            Mechanism::Ulayer => "ulayer",
            Mechanism::UlayerBranch => "ulayer+branch",
        }
    }

    /// Parses a name; the error lists the valid ones.
    pub fn parse(name: &str) -> Result<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                Error::Other(format!(
                    "unknown mechanism '{name}'; valid mechanisms (precisions): {}",
                    valid_list()
                ))
            })
    }

    /// Parses a name and checks that it runs at `precision`; errors list the valid
    /// combinations. On the cooperative mechanisms, f16 means F32 on the CPU (it has no F16
    /// kernels) and F16 on the GPU; quint8 means processor-friendly quantization (QUInt8
    /// storage; 8-bit integers on the CPU, F16 on the GPU).
    pub fn parse_with(name: &str, precision: Precision) -> Result<Mechanism> {
        let m = Mechanism::parse(name)?;
        let ok = VALID
            .iter()
            .any(|(n, ps)| *n == name && ps.contains(&precision));
        if ok {
            Ok(m)
        } else {
            Err(Error::Other(format!(
                "mechanism '{name}' does not run at {precision}; valid mechanisms (precisions): {}",
                valid_list()
            )))
        }
    }

    /// True for the mechanisms that plan from a device profile.
    pub fn needs_profile(self) -> bool {
        !matches!(self, Mechanism::Cpu | Mechanism::Gpu)
    }

    /// The precision each processor computes at when this mechanism runs at `precision`.
    pub fn processor_precisions(precision: Precision) -> (Precision, Precision) {
        match precision {
            Precision::F32 => (Precision::F32, Precision::F32),
            Precision::F16 => (Precision::F32, Precision::F16),
            Precision::Quint8 => (Precision::Quint8, Precision::Quint8),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
