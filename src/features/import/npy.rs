//! NumPy `.npy` matrices (the `_precomp` folders), read with the `npyz` crate.

use std::path::Path;

use super::{format_error, ImportError};

/// A `[rows, dims]` row-major float matrix.
pub struct Matrix {
    pub rows: usize,
    pub dims: usize,
    pub data: Vec<f32>,
}

pub fn read_matrix(path: &Path) -> Result<Matrix, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| format_error(path, format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let [rows, dims] = shape.as_slice() else {
        let hint = if shape.len() == 3 {
            " (region features, e.g. SCAN's N × 36 × 2048: pool them to one vector per image first)"
        } else {
            ""
        };
        return Err(format_error(
            path,
            format!("shape {shape:?}; expected a 2-D images × dims matrix{hint}"),
        ));
    };
    let (rows, dims) = (*rows, *dims);
    let fortran = npy.order() == npyz::Order::Fortran;
    let dtype = npy.dtype();
    let descr = dtype.descr();
    let values: Vec<f32> = match npy.try_data::<f32>() {
        Ok(reader) => reader
            .collect::<std::io::Result<Vec<f32>>>()
            .map_err(|e| format_error(path, e.to_string()))?,
        Err(npy) => match npy.try_data::<f64>() {
            Ok(reader) => reader
                .collect::<std::io::Result<Vec<f64>>>()
                .map_err(|e| format_error(path, e.to_string()))?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            Err(_) => {
                return Err(format_error(
                    path,
                    format!("dtype {descr}; features must be float32 or float64"),
                ))
            }
        },
    };
    let data = if fortran {
        let mut out = vec![0f32; rows * dims];
        for d in 0..dims {
            for r in 0..rows {
                out[r * dims + d] = values[d * rows + r];
            }
        }
        out
    } else {
        values
    };
    Ok(Matrix { rows, dims, data })
}
