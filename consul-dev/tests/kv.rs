//! KV edge answers as Consul's KVS handlers give them.

mod common;
mod support;

use common::Api;
use consul_dev::ConsulDev;
use reqwest::Method;

#[tokio::test]
async fn bad_numbers_and_conflicting_flags() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api.error(Method::PUT, "/v1/kv/a?flags=x", None).await;
    assert_eq!(
        (code, text.as_str()),
        (500, "strconv.ParseUint: parsing \"x\": invalid syntax")
    );
    let (code, text) = api
        .error(Method::PUT, "/v1/kv/a?cas=99999999999999999999", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            500,
            "strconv.ParseUint: parsing \"99999999999999999999\": value out of range"
        )
    );
    let (code, text) = api
        .error(Method::PUT, "/v1/kv/a?release=s&cas=1", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Conflicting flags: cas=1&release=s\n")
    );
    let (code, text) = api
        .error(Method::DELETE, "/v1/kv/a?recurse&cas=1", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Conflicting flags: cas=1&recurse=\n")
    );
}

#[tokio::test]
async fn cas_deletes_and_missing_keys() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    // A CAS delete of a key that is not there succeeds.
    let resp = api.send(Method::DELETE, "/v1/kv/none?cas=5", None).await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let resp = api.put("/v1/kv/k", None).await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let (entries, _) = api.get_json("/v1/kv/k").await;
    let modify = entries[0]["ModifyIndex"].as_u64().unwrap();
    let resp = api
        .send(
            Method::DELETE,
            &format!("/v1/kv/k?cas={}", modify + 1),
            None,
        )
        .await;
    assert_eq!(resp.text().await.unwrap().trim(), "false");
    let resp = api
        .send(Method::DELETE, &format!("/v1/kv/k?cas={modify}"), None)
        .await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let resp = api.get("/v1/kv/k").await;
    assert_eq!(resp.status(), 404);
    assert!(common::index_of(&resp) >= 1, "404s carry the index");
    let resp = api.get("/v1/kv/nothing/?keys").await;
    assert_eq!(resp.status(), 404);
    let (root, _) = api.get_json("/v1/kv/?keys").await;
    assert_eq!(root, serde_json::json!([]));
}

#[tokio::test]
async fn get_without_a_key_is_missing_key_name_unless_listing() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api.error(Method::GET, "/v1/kv/", None).await;
    assert_eq!((code, text.as_str()), (400, "Missing key name"));
    // Listing the root is allowed: `keys` answers [], `recurse` 404 while empty.
    let (keys, _) = api.get_json("/v1/kv/?keys").await;
    assert_eq!(keys, serde_json::json!([]));
    assert_eq!(api.get("/v1/kv/?recurse").await.status(), 404);
    api.put_ok("/v1/kv/a", None).await;
    let (all, _) = api.get_json("/v1/kv/?recurse").await;
    assert_eq!(all[0]["Key"], "a");
}

/// A watch as client libraries run one: a loop of blocking reads of one key with
/// `wait=1ms`, keeping each answer whose `X-Consul-Index` moved. Returns the values
/// seen (`None`: absent) once `stop` is set.
async fn watch_key(
    api: Api,
    key: &'static str,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut index = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let resp = api
            .get(&format!("/v1/kv/{key}?index={index}&wait=1ms"))
            .await;
        let new_index = common::index_of(&resp);
        let value = match resp.status().as_u16() {
            404 => None,
            200 => {
                let body: serde_json::Value = resp.json().await.unwrap();
                Some(body[0]["Value"].as_str().unwrap_or_default().to_owned())
            }
            other => panic!("watch answered {other}"),
        };
        if new_index != index {
            index = new_index;
            seen.lock().unwrap().push(value);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_every_state_of_a_key_written_in_a_loop() {
    // What we want to test: a watch started together with a write loop, as client
    // suites run one against Consul, first sees the key absent. Its first read races
    // the first write; the commit latency decides it, as raft's apply does in Consul.
    // 50 ms rather than the default 1 ms keeps the test decided on a loaded machine.
    let dev = ConsulDev::builder()
        .kv_commit_latency(std::time::Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let api = Api::new(&dev);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The watch starts and the writes follow at once, without waiting for it.
    let watcher = tokio::spawn(watch_key(api.clone(), "test", seen.clone(), stop.clone()));
    for value in ["1", "2", "3"] {
        let resp = api
            .http
            .put(format!("{}/v1/kv/test", api.base))
            .body(value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = api.send(Method::DELETE, "/v1/kv/test", None).await;
    assert_eq!(resp.status(), 200);
    support::eventually(
        std::time::Duration::from_secs(5),
        "the watch sees five states",
        || async { seen.lock().unwrap().len() >= 5 },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.await.unwrap();
    let b64 = |s: &str| Some(s.to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None, b64("MQ=="), b64("Mg=="), b64("Mw=="), None]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_during_a_kv_commit_sees_the_state_before_it() {
    let dev = ConsulDev::builder()
        .kv_commit_latency(std::time::Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let api = Api::new(&dev);
    let writer = {
        let api = api.clone();
        tokio::spawn(async move { api.put("/v1/kv/slow", None).await.status() })
    };
    support::eventually(
        std::time::Duration::from_secs(5),
        "the write arrives",
        || async { dev.request_count("/v1/kv/slow") >= 1 },
    )
    .await;
    // The write is committing: a read answers from the state before it.
    assert_eq!(api.get("/v1/kv/slow").await.status(), 404);
    assert_eq!(writer.await.unwrap(), 200);
    let (entries, _) = api.get_json("/v1/kv/slow").await;
    assert_eq!(entries[0]["Key"], "slow");
}
