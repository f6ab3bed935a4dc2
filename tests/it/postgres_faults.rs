//! The database failing under the scale-out path: two replicas over one Postgres serve a loop of
//! uploads and searches while Postgres crashes (`pg_ctl stop -m immediate`, then kill -9 of the
//! postmaster) and comes back. Requests answer 503 `database_unavailable` with Retry-After in
//! bounded time (never a 500), /ready goes 503 while /health stays 200, both replicas reconnect by
//! themselves, every 201 is there through both, and a 503'd upload left nothing behind. And a
//! replica started while the database is down waits, retrying, and becomes ready when it is up.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    clip_parity::clip_fixture,
    common::{postgres::Postgres, *},
};

/// Something done to the database server.
type PgAction<'a> = &'a dyn Fn(&Postgres);

/// What one request of the loop got.
#[derive(Debug, Clone)]
struct Outcome {
    upload: Option<String>,
    status: u16,
    seconds: f64,
    at: Instant,
}

/// Longest a request may take while the database is down: the first to meet it waits out the
/// pool's connection wait (2 s here; a request may meet it twice, on a dropped connection and
/// then on the pool), later ones are answered at once (`database_gate`).
const BOUNDED: f64 = 6.0;

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client
        .get(url)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Poll `check` until it holds, for at most `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_answer_503_through_a_database_crash_and_recover_by_themselves() {
    let pg = Postgres::start("faults");
    let url = pg.url();
    let shared = tempdir("pg-faults");
    let clip = clip_fixture("clip-tiny");
    let args = [
        "--database",
        url.as_str(),
        "--model",
        clip.to_str().unwrap(),
        "--db-timeout-ms",
        "2000",
    ];
    let replicas = Arc::new([Server::start(&shared, &args), Server::start(&shared, &args)]);
    let client = reqwest::Client::new();
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    // the loop: an upload through one replica, a search through the other, and again
    let traffic = {
        let (replicas, outcomes, stop, client) = (
            replicas.clone(),
            outcomes.clone(),
            stop.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (up, read) = (&replicas[(i % 2) as usize], &replicas[(1 - i % 2) as usize]);
                let id = format!("f-{i:03}");
                let form = reqwest::multipart::Form::new()
                    .part(
                        "image",
                        reqwest::multipart::Part::bytes(noise_png(i, 48)).file_name("f.png"),
                    )
                    .text("caption", format!("fault picture {i}"))
                    .text("id", id.clone());
                let started = Instant::now();
                let r = client
                    .post(up.url("/v1/images"))
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                if status == 503 {
                    assert!(r.headers().contains_key("retry-after"));
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
                }
                outcomes.lock().unwrap().push(Outcome {
                    upload: Some(id),
                    status,
                    seconds: started.elapsed().as_secs_f64(),
                    at: Instant::now(),
                });
                let started = Instant::now();
                let status = client
                    .post(read.url("/v1/search/text"))
                    .json(&json!({"query": "fault picture", "k": 5}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                outcomes.lock().unwrap().push(Outcome {
                    upload: None,
                    status,
                    seconds: started.elapsed().as_secs_f64(),
                    at: Instant::now(),
                });
                i += 1;
            }
        })
    };
    let acked_since = |t: Instant| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.upload.is_some() && o.status == 201 && o.at > t)
            .count()
    };

    let faults: [(&str, PgAction, PgAction); 2] = [
        (
            "pg_ctl stop -m immediate",
            &|pg| pg.stop_immediate(),
            &|pg| pg.start_again(),
        ),
        (
            "kill -9 of the postmaster",
            &|pg| pg.kill_postmaster(),
            &|pg| pg.start_after_kill(),
        ),
    ];
    for (fault, crash, restart) in faults {
        let phase = Instant::now();
        wait_until(
            "uploads before the fault",
            Duration::from_secs(60),
            || async { acked_since(phase) >= 3 },
        )
        .await;
        crash(&pg);
        let crashed = Instant::now();
        wait_until("a 503 after the crash", Duration::from_secs(30), || async {
            outcomes
                .lock()
                .unwrap()
                .iter()
                .any(|o| o.at > crashed && o.status == 503)
        })
        .await;
        // keep it down for a while of traffic: later requests are answered at once
        wait_until(
            "traffic during the outage",
            Duration::from_secs(30),
            || async {
                outcomes
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|o| o.at > crashed)
                    .count()
                    >= 8
            },
        )
        .await;
        for s in replicas.iter() {
            assert_eq!(
                status_of(&client, s.url("/ready")).await,
                503,
                "{fault}: /ready"
            );
            assert_eq!(
                status_of(&client, s.url("/health")).await,
                200,
                "{fault}: /health"
            );
        }
        restart(&pg);
        let restarted = Instant::now();
        for s in replicas.iter() {
            wait_until("ready again", Duration::from_secs(60), || async {
                status_of(&client, s.url("/ready")).await == 200
            })
            .await;
        }
        eprintln!(
            "{fault}: both replicas ready {:.1}s after the restart",
            restarted.elapsed().as_secs_f64()
        );
        wait_until(
            "uploads after the restart",
            Duration::from_secs(60),
            || async { acked_since(restarted) >= 2 },
        )
        .await;
        let during: Vec<Outcome> = outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.at > crashed && o.at < restarted)
            .cloned()
            .collect();
        let mut seconds: Vec<f64> = during.iter().map(|o| o.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let (median, slowest) = (seconds[seconds.len() / 2], seconds[seconds.len() - 1]);
        eprintln!(
            "{fault}: {} requests during the outage, median {median:.3}s, slowest {slowest:.2}s",
            during.len()
        );
        assert!(slowest <= BOUNDED, "{fault}: a request took {slowest:.1}s");
        assert!(
            median < 0.5,
            "{fault}: requests wait instead of failing fast ({median:.2}s)"
        );
    }
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();

    let outcomes = outcomes.lock().unwrap().clone();
    assert!(
        outcomes.iter().all(|o| [200, 201, 503].contains(&o.status)),
        "only successes and 503s: {:?}",
        outcomes
            .iter()
            .filter(|o| ![200, 201, 503].contains(&o.status))
            .collect::<Vec<_>>()
    );
    let acked: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.status == 201)
        .filter_map(|o| o.upload.as_deref())
        .collect();
    let refused: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.status == 503)
        .filter_map(|o| o.upload.as_deref())
        .collect();
    eprintln!(
        "{} uploads acknowledged, {} answered 503",
        acked.len(),
        refused.len()
    );
    assert!(!refused.is_empty());
    for s in replicas.iter() {
        for id in &acked {
            assert_eq!(
                status_of(&client, s.url(&format!("/v1/images/{id}"))).await,
                200,
                "{id}"
            );
        }
        for id in &refused {
            assert_eq!(
                status_of(&client, s.url(&format!("/v1/images/{id}"))).await,
                404,
                "{id}"
            );
        }
        let answer = post_json(
            &client,
            s.url("/v1/search/text"),
            json!({"query": "fault picture", "k": 100}),
        )
        .await;
        let found: Vec<&str> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["image_id"].as_str().unwrap())
            .collect();
        assert!(
            acked.iter().all(|id| found.contains(id)),
            "searchable: {answer}"
        );
    }
    // one stored file per acknowledged upload (each has its own content): no orphans
    let stored = walk(&shared.join("images"));
    assert_eq!(stored, acked.len(), "files under images/");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_the_database_is_down_becomes_ready_when_it_is_up() {
    let pg = Postgres::start("late");
    pg.stop_immediate();
    let dir = tempdir("pg-late");
    let log = dir.join("replica.log");
    let url = pg.url();
    let clip = clip_fixture("clip-tiny");
    let server = Server::spawn(
        &dir,
        &[
            "--database",
            url.as_str(),
            "--model",
            clip.to_str().unwrap(),
        ],
        &log,
    );
    let client = reqwest::Client::new();
    // alive, not ready, and saying why, once per attempt
    wait_until(
        "two connection attempts logged",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("database not reachable")
                .count()
                >= 2
        },
    )
    .await;
    assert_eq!(status_of(&client, server.url("/health")).await, 200);
    assert_eq!(status_of(&client, server.url("/ready")).await, 503);
    pg.start_again();
    let up = Instant::now();
    wait_until(
        "ready once the database is up",
        Duration::from_secs(60),
        || async { status_of(&client, server.url("/ready")).await == 200 },
    )
    .await;
    eprintln!(
        "ready {:.1}s after the database came up",
        up.elapsed().as_secs_f64()
    );
    let attempts = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = attempts
        .lines()
        .filter(|l| l.contains("database not reachable"))
        .collect();
    eprintln!("{} retry lines, first: {}", lines.len(), lines[0]);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("attempt") && l.contains("next in")),
        "{lines:?}"
    );
}
