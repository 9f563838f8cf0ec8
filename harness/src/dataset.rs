//! The accuracy images of a campaign: the bundled photos or an ImageNet-style folder, with
//! each image's accepted classes, and their paths on the device.
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use crate::campaign::AccuracySpec;
use crate::transport::Transport;

/// Labeled images, as the device sees them.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceImages {
    /// "bundled" or the folder.
    pub source: String,
    /// Device paths, in order.
    pub paths: Vec<String>,
    /// Accepted classes of each image (the first is the primary label).
    pub labels: Vec<Vec<usize>>,
}

/// Loads the dataset on this machine and makes it readable on the device.
pub fn prepare(
    spec: &AccuracySpec,
    data_dir: &Path,
    base: &Path,
    transport: &mut dyn Transport,
) -> Result<DeviceImages> {
    let mut local: Vec<(PathBuf, Vec<usize>, Option<PathBuf>)> = Vec::new();
    if spec.dataset == "bundled" {
        let photos = datasets::bundled_photos(data_dir).with_context(|| {
            format!(
                "the bundled photos are not in {} (fetch them: cargo run --release -p datasets --bin ulab-data -- fetch)",
                data_dir.display()
            )
        })?;
        for p in photos {
            let rel = p.path.strip_prefix(data_dir).ok().map(Path::to_path_buf);
            local.push((p.path, p.accepted, rel));
        }
    } else {
        let dir = Path::new(&spec.dataset);
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            base.join(dir)
        };
        let folder = datasets::ImageFolder::open(&dir)
            .with_context(|| format!("[accuracy] dataset {}", dir.display()))?;
        for s in folder.samples() {
            local.push((s.path.clone(), vec![s.label], None));
        }
    }
    if let Some(n) = spec.limit {
        local.truncate(n);
    }
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (i, (path, accepted, in_data)) in local.into_iter().enumerate() {
        let device = match in_data {
            Some(rel) => transport.data_path(&rel),
            None => {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default();
                transport.put_file(&path, &format!("images/{i:06}.{ext}"))?
            }
        };
        paths.push(device);
        labels.push(accepted);
    }
    Ok(DeviceImages {
        source: spec.dataset.clone(),
        paths,
        labels,
    })
}
