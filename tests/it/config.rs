//! The TOML configuration file: keys are flag names, and flags > environment > file > default.

use crate::common::*;

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("xmodal.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn delete_status(server: &Server, key: &str) -> u16 {
    reqwest::Client::new()
        .delete(server.url("/v1/images/no-such-image"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn file_values_apply_and_the_environment_overrides_them() {
    let dir = tempdir("config-file");
    let config = write_config(
        &dir,
        "api_key = \"from-file\"\nmax-batch = 8\n\n[index]\nef_search = 48\n",
    );
    let server = Server::start(&dir, &["--config", &config]);
    // the key came from the file: the wrong key is refused, the file's key gets through to 404
    assert_eq!(delete_status(&server, "wrong").await, 401);
    assert_eq!(delete_status(&server, "from-file").await, 404);
    drop(server);

    let server = Server::start_with_env(
        &dir,
        &["--config", &config],
        &[("XMODAL_API_KEY", "from-env")],
    );
    assert_eq!(delete_status(&server, "from-file").await, 401);
    assert_eq!(delete_status(&server, "from-env").await, 404);
    drop(server);

    // and a flag beats both
    let server = Server::start_with_env(
        &dir,
        &["--config", &config, "--api-key", "from-flag"],
        &[("XMODAL_API_KEY", "from-env")],
    );
    assert_eq!(delete_status(&server, "from-env").await, 401);
    assert_eq!(delete_status(&server, "from-flag").await, 404);
}

#[test]
fn unknown_keys_and_bad_files_are_refused_with_the_file_named() {
    let dir = tempdir("config-bad");
    let config = write_config(&dir, "max_bach = 8\n");
    let (ok, _, err) = xmodal(&["--config", &config, "serve"]);
    assert!(!ok);
    assert!(
        err.contains("unknown key \"max_bach\"") && err.contains("xmodal.toml"),
        "{err}"
    );

    let config = write_config(&dir, "max_batch = [\n");
    let (ok, _, err) = xmodal(&["--config", &config, "serve"]);
    assert!(!ok);
    assert!(
        err.contains("parsing") && err.contains("xmodal.toml"),
        "{err}"
    );

    // a value of the wrong type is clap's usual error, naming the flag
    let config = write_config(&dir, "max_batch = \"many\"\n");
    let (ok, _, err) = xmodal(&["--config", &config, "serve"]);
    assert!(!ok);
    assert!(err.contains("max-batch"), "{err}");
}
