//! MATLAB v5 matrices (Karpathy's `vgg_feats.mat`), read with the `matfile` crate.

use std::path::Path;

use super::{format_error, ImportError};

/// A float matrix as `[images, dims]` row-major.
pub struct Matrix {
    pub dims: usize,
    pub data: Vec<f32>,
    /// The file stored it images × dims (transposed relative to Karpathy's dims × images).
    pub transposed: bool,
}

/// Read variable `name`, a 2-D real float matrix with one column (or row) per image.
pub fn read_images_matrix(path: &Path, name: &str, images: usize) -> Result<Matrix, ImportError> {
    let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut header = [0u8; 116];
    let _ = std::io::Read::read(&mut &file, &mut header);
    let header = String::from_utf8_lossy(&header);
    if header.starts_with("MATLAB 7.3") {
        return Err(format_error(
            path,
            "a MATLAB v7.3 (HDF5) file; re-save it as v5/v7 (`save -v7` or scipy.io.savemat)",
        ));
    }
    if !header.starts_with("MATLAB 5.0") {
        return Err(format_error(path, "not a MATLAB v5 .mat file"));
    }
    use std::io::Seek;
    let mut file = file;
    file.rewind().map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mat = matfile::MatFile::parse(std::io::BufReader::new(file)).map_err(|e| {
        format_error(
            path,
            format!("cannot read this MATLAB file ({e}); features must be a real single or double matrix"),
        )
    })?;
    let array = mat.find_by_name(name).ok_or_else(|| {
        let found: Vec<&str> = mat.arrays().iter().map(|a| a.name()).collect();
        format_error(
            path,
            format!("no numeric variable {name:?}; the file holds {found:?} (pick one with --mat-variable)"),
        )
    })?;
    let size = array.size();
    let [a, b] = size.as_slice() else {
        return Err(format_error(
            path,
            format!("{name} has shape {size:?}; expected a 2-D dims × images matrix"),
        ));
    };
    let (a, b) = (*a, *b);
    // MATLAB stores column-major: for dims × images, each image's column is contiguous, which is
    // exactly a row-major images × dims matrix.
    let column_major: Vec<f32> = match array.data() {
        matfile::NumericData::Single { real, imag: None } => real.clone(),
        matfile::NumericData::Double { real, imag: None } => {
            real.iter().map(|&v| v as f32).collect()
        }
        matfile::NumericData::Single { .. } | matfile::NumericData::Double { .. } => {
            return Err(format_error(
                path,
                format!("{name} is complex; features must be real"),
            ))
        }
        other => {
            return Err(format_error(
                path,
                format!(
                    "{name} holds {}; features must be single or double floats",
                    dtype_name(other)
                ),
            ))
        }
    };
    if b == images {
        Ok(Matrix {
            dims: a,
            data: column_major,
            transposed: false,
        })
    } else if a == images {
        // images × dims, column-major: transpose into rows
        let mut data = vec![0f32; a * b];
        for d in 0..b {
            for i in 0..a {
                data[i * b + d] = column_major[d * a + i];
            }
        }
        Ok(Matrix {
            dims: b,
            data,
            transposed: true,
        })
    } else {
        Err(format_error(
            path,
            format!("{name} is {a} × {b}, but the split file lists {images} images: one column per image, in the split file's order, is expected"),
        ))
    }
}

fn dtype_name(data: &matfile::NumericData) -> &'static str {
    use matfile::NumericData::*;
    match data {
        Int8 { .. } => "int8",
        UInt8 { .. } => "uint8",
        Int16 { .. } => "int16",
        UInt16 { .. } => "uint16",
        Int32 { .. } => "int32",
        UInt32 { .. } => "uint32",
        Int64 { .. } => "int64",
        UInt64 { .. } => "uint64",
        Single { .. } => "single",
        Double { .. } => "double",
    }
}
