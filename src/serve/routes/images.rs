//! The image collection: add (durable before 201), describe, fetch bytes, delete.

use std::path::PathBuf;

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use sha2::{Digest, Sha256};

use super::super::{
    api::{image_url, Created, FileParams, ImageInfo},
    error::ApiError,
    input::{ApiQuery, ImageBody},
    service::caption_id,
    state::AppState,
};
use crate::{
    data::{
        catalog::{LinkedRow, NewImage, StoredVector},
        ImageId,
    },
    encode::image::preprocess,
    index::pgvector::{insert_statement, vector_literal},
};

/// Path ids go through the same validation as stored ids, so none can name a file.
pub fn parse_id(raw: &str) -> Result<ImageId, ApiError> {
    ImageId::new(raw).map_err(|e| ApiError::Malformed(e.to_string()))
}

const MAX_CAPTIONS: usize = 32;
const MAX_CAPTION_CHARS: usize = 2000;

#[utoipa::path(post, path = "/v1/images", tag = "images",
    request_body(content = super::super::api::UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = Created), (status = 400, body = super::super::error::ErrorBody), (status = 401, body = super::super::error::ErrorBody), (status = 409, body = super::super::error::ErrorBody), (status = 413, body = super::super::error::ErrorBody), (status = 415, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody)),
    security(("bearer" = [])))]
/// Add an image with captions. Searchable at once; durable before the 201.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    ImageBody(form): ImageBody,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    state.authorize(&headers)?;
    let service = state.service()?;
    let bytes = form
        .image
        .ok_or_else(|| ApiError::Invalid("missing the `image` field".into()))?;
    let mut captions = Vec::new();
    let mut id = None;
    for (name, value) in form.fields {
        match name.as_str() {
            "caption" => {
                let text = value.trim().to_string();
                if text.is_empty() {
                    return Err(ApiError::Invalid("captions must not be empty".into()));
                }
                if text.chars().count() > MAX_CAPTION_CHARS {
                    return Err(ApiError::Invalid(format!(
                        "a caption is limited to {MAX_CAPTION_CHARS} characters"
                    )));
                }
                captions.push(text);
            }
            "id" => {
                id = Some(ImageId::new(value.trim()).map_err(|e| ApiError::Invalid(e.to_string()))?)
            }
            other => {
                return Err(ApiError::Invalid(format!(
                    "unknown form field {other:?} (expected image, caption, id)"
                )))
            }
        }
    }
    if captions.len() > MAX_CAPTIONS {
        return Err(ApiError::Invalid(format!(
            "at most {MAX_CAPTIONS} captions per image"
        )));
    }
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let id = match id {
        Some(id) => id,
        None => ImageId::new(format!("img-{}", &sha[..16])).expect("hex id is valid"),
    };
    // decode (validates; sniffs the real format), preprocess, then encode image and captions
    let (encoder, image_queue) = service.image_side()?;
    let encoder = encoder.clone();
    let decode_bytes = bytes.clone();
    let (prepared, (width, height), ext) = state
        .decode(move || -> Result<_, ApiError> {
            let decoded = preprocess::decode(&decode_bytes)?;
            let format = image::guess_format(&decode_bytes)
                .map_err(|e| ApiError::UnsupportedMedia(e.to_string()))?;
            let ext = format.extensions_str().first().copied().unwrap_or("img");
            let cropped = decoded.model_input(encoder.preprocess());
            Ok((
                preprocess::to_tensor(&cropped, encoder.preprocess(), &candle_core::Device::Cpu)?,
                decoded.dimensions(),
                ext,
            ))
        })
        .await?;
    let image_features = image_queue.encode(prepared).await?;
    // the captions as one batch
    let caption_features = service.engine.text.encode_many(captions.clone()).await?;

    let _write = service.write_lock.lock().await;
    if service.catalog.image(&id).await?.is_some() {
        return Err(ApiError::Conflict(id.to_string()));
    }
    // 1. the bytes, content-addressed, fsynced before the catalog refers to them
    let path = store_file(&service.data_dir, &sha, ext, &bytes).await?;
    // 2. catalog row + captions + features in one durable transaction
    let (image_set, text_set) = (service.image_spec.id().0, service.text_spec.id().0);
    let mut vectors = vec![StoredVector {
        feature_set: image_set,
        item: id.to_string(),
        image_id: id.clone(),
        vector: image_features.clone(),
    }];
    for (i, f) in caption_features.iter().enumerate() {
        vectors.push(StoredVector {
            feature_set: text_set.clone(),
            item: caption_id(id.as_str(), i as u32),
            image_id: id.clone(),
            vector: f.clone(),
        });
    }
    let new = NewImage {
        id: id.clone(),
        location: Some(path.display().to_string()),
        width: Some(width),
        height: Some(height),
        sha256: Some(sha),
        split: None,
        captions,
    };
    // every space's embeddings: in-process indexes after the commit, pgvector rows within it
    let mut embeddings = Vec::new();
    for space in &service.spaces {
        let image = (id.to_string(), space.project_image(image_features.clone())?);
        let texts = caption_features
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Ok((
                    caption_id(id.as_str(), i as u32),
                    space.project_text(f.clone())?,
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        embeddings.push((space, image, texts));
    }
    let mut linked = Vec::new();
    for (space, image, texts) in &embeddings {
        for (index, rows) in [
            (&space.images, std::slice::from_ref(image)),
            (&space.captions, texts.as_slice()),
        ] {
            if let Some(pg) = index.postgres() {
                let sql = insert_statement(pg.table());
                linked.extend(rows.iter().map(|(item, v)| LinkedRow {
                    sql: sql.clone(),
                    params: [item.clone(), id.to_string(), vector_literal(v)],
                }));
            }
        }
    }
    if !service
        .catalog
        .insert_with_vectors(service.uploads_dataset, &new, &vectors, &linked)
        .await?
    {
        return Err(ApiError::Conflict(id.to_string()));
    }
    // 3. the in-process indexes (derived; a crash here is repaired from the catalog at start-up)
    for (space, (key, v), texts) in &embeddings {
        if let Some(index) = space.images.memory() {
            index.upsert(key, v).map_err(ApiError::Internal)?;
        }
        if let Some(index) = space.captions.memory() {
            for (key, v) in texts {
                index.upsert(key, v).map_err(ApiError::Internal)?;
            }
        }
    }
    let default = &service.spaces[0];
    metrics::gauge!("xmodal_index_size", "side" => "images")
        .set(default.images.count().await as f64);
    metrics::gauge!("xmodal_index_size", "side" => "captions")
        .set(default.captions.count().await as f64);
    Ok((
        StatusCode::CREATED,
        Json(Created {
            image_id: id.to_string(),
        }),
    ))
}

/// Write `bytes` under `DATA/images/ab/abcdef….ext` via a temporary file, fsync and rename.
async fn store_file(
    data_dir: &std::path::Path,
    sha: &str,
    ext: &str,
    bytes: &[u8],
) -> Result<PathBuf, ApiError> {
    let dir = data_dir.join("images").join(&sha[..2]);
    let path = dir.join(format!("{sha}.{ext}"));
    let bytes = bytes.to_vec();
    let target = path.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if target.exists() {
            return Ok(()); // same content already stored
        }
        std::fs::create_dir_all(&dir)?;
        let tmp = target.with_extension(format!("tmp-{}", std::process::id()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("storing the image: {e}")))?;
    Ok(path)
}

#[utoipa::path(get, path = "/v1/images/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 200, body = ImageInfo), (status = 400, body = super::super::error::ErrorBody), (status = 404, body = super::super::error::ErrorBody)))]
/// An image's captions and size.
pub async fn get_image(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ImageInfo>, ApiError> {
    let service = state.service()?;
    let id = parse_id(&id)?;
    let record = service
        .catalog
        .image(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no image with id {:?}", id.as_str())))?;
    let captions = service
        .catalog
        .captions_of(&id)
        .await?
        .into_iter()
        .map(|c| c.text)
        .collect();
    Ok(Json(ImageInfo {
        url: image_url(id.as_str()),
        image_id: id.to_string(),
        captions,
        width: record.width,
        height: record.height,
        dataset: record.dataset,
    }))
}

#[utoipa::path(get, path = "/v1/images/{id}/file", tag = "images", params(("id" = String, Path), FileParams),
    responses((status = 200, description = "the image bytes (or a JPEG thumbnail with ?size=)", content_type = "image/*"), (status = 404, body = super::super::error::ErrorBody), (status = 422, body = super::super::error::ErrorBody)))]
/// The stored image, or a thumbnail.
pub async fn get_file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<FileParams>,
) -> Result<Response, ApiError> {
    let service = state.service()?;
    let id = parse_id(&id)?;
    if let Some(size) = params.size {
        if !(16..=1024).contains(&size) {
            return Err(ApiError::Invalid(format!(
                "size must be between 16 and 1024, got {size}"
            )));
        }
    }
    let record = service
        .catalog
        .image(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no image with id {:?}", id.as_str())))?;
    let location = record
        .location
        .ok_or_else(|| ApiError::NotFound(format!("image {:?} has no stored file", id.as_str())))?;
    let (bytes, content_type) = state
        .decode(move || -> Result<(Vec<u8>, &'static str), ApiError> {
            let bytes = std::fs::read(&location)
                .map_err(|_| ApiError::NotFound("the image file is gone".into()))?;
            match params.size {
                None => {
                    let mime = image::guess_format(&bytes)
                        .map(|f| f.to_mime_type())
                        .unwrap_or("application/octet-stream");
                    Ok((bytes, mime))
                }
                Some(size) => {
                    let thumb = preprocess::decode(&bytes)?.thumbnail(size);
                    let mut out = Vec::new();
                    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                        .encode_image(&thumb)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    Ok((out, "image/jpeg"))
                }
            }
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/images/{id}", tag = "images", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 401, body = super::super::error::ErrorBody), (status = 404, body = super::super::error::ErrorBody)),
    security(("bearer" = [])))]
/// Delete an image: gone from results at once, durably.
pub async fn delete_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.authorize(&headers)?;
    let service = state.service()?;
    let id = parse_id(&id)?;
    let _write = service.write_lock.lock().await;
    let captions = service.catalog.captions_of(&id).await?;
    let record = service.catalog.image(&id).await?;
    if !service.catalog.delete_image(&id).await? {
        return Err(ApiError::NotFound(format!(
            "no image with id {:?}",
            id.as_str()
        )));
    }
    // pgvector rows went with the catalog rows (ON DELETE CASCADE); in-process indexes follow
    for space in &service.spaces {
        if let Some(index) = space.images.memory() {
            index.remove(id.as_str());
        }
        if let Some(index) = space.captions.memory() {
            for c in &captions {
                index.remove(&caption_id(id.as_str(), c.ordinal));
            }
        }
    }
    // uploaded bytes nobody refers to any more
    if let Some(location) = record
        .and_then(|r| r.location)
        .filter(|l| l.starts_with(&service.data_dir.join("images").display().to_string()))
    {
        if service.catalog.images_at(&location).await? == 0 {
            let _ = tokio::fs::remove_file(&location).await;
        }
    }
    let default = &service.spaces[0];
    metrics::gauge!("xmodal_index_size", "side" => "images")
        .set(default.images.count().await as f64);
    metrics::gauge!("xmodal_index_size", "side" => "captions")
        .set(default.captions.count().await as f64);
    Ok(StatusCode::NO_CONTENT)
}
