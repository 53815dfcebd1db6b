//! Login to a Nacos server with auth enabled (rnacos), and the password in no log.
//!
//! What we want to test: without credentials, or with a wrong password, the server
//! refuses a registration; with the right ones, registration and discovery work; and a
//! whole run, every target at TRACE (the SDK's included), shows neither password in
//! its logs or in any `Debug` text. This binary holds one test: it installs the global
//! subscriber.
#![cfg(feature = "nacos")]

#[path = "support/nacos.rs"]
mod nacos_support;
mod support;

use std::time::Duration;

use nacos_support::Seen;
use support::capture::Captured;
use support::eventually;
use tonic_discovery::nacos::{Client, Registration};
use tonic_discovery_testkit::NacosServer;

const USER: &str = "td-admin";
const PASSWORD: &str = "pw-7f3c1e9a-5ec2e7";
const WRONG: &str = "pw-0b9e33a1-wr0ng";

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, WRONG] {
        assert!(!text.contains(secret), "{what} shows a password: {text}");
    }
}

async fn client(
    server: &NacosServer,
    credentials: Option<(&str, &str)>,
    debug: &mut Vec<String>,
) -> Client {
    let mut builder = Client::builder(server.url())
        .cache_dir(server.scratch_dir(&format!("cache-{}", debug.len())))
        .request_timeout(Duration::from_secs(2));
    if let Some((user, password)) = credentials {
        builder = builder.credentials(user, password);
    }
    debug.push(format!("{builder:?}"));
    let client = builder.connect().await.expect("connects");
    debug.push(format!("{client:?}"));
    client
}

/// An rnacos with auth on that takes logins. rnacos answers logins with "Mailbox has
/// closed" until its store is up, a moment after its ports are; on a starved machine
/// (both cores busy with other work) some starts never get there, so up to five
/// servers are tried. Logins are polled every 250 ms: it allows 100 a minute per user.
async fn server_taking_logins() -> NacosServer {
    let login = [("username", USER), ("password", PASSWORD)];
    for _ in 0..5 {
        let server = NacosServer::start_with_env(&[
            ("RNACOS_ENABLE_OPEN_API_AUTH", "true"),
            ("RNACOS_INIT_ADMIN_USERNAME", USER),
            ("RNACOS_INIT_ADMIN_PASSWORD", PASSWORD),
        ])
        .await
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let answer = server
                .open_api("POST", "/nacos/v1/auth/login", &login)
                .await;
            if matches!(answer, Ok((200, _))) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    panic!("five rnacos servers in a row took no login within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_works_and_the_password_is_in_no_log_or_debug() {
    let logs = Captured::install();
    let server = server_taking_logins().await;
    let mut debug = Vec::new();
    let addr = "127.0.0.1:49001".parse().unwrap();

    let anonymous = client(&server, None, &mut debug).await;
    let e = anonymous
        .register(Registration::new("echo", addr))
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("403"),
        "refused for want of a login: {e:?}"
    );
    debug.push(format!("{e} {e:?}"));
    let wrong = client(&server, Some((USER, WRONG)), &mut debug).await;
    let e = wrong
        .register(Registration::new("echo", addr))
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("403"),
        "refused for a wrong password: {e:?}"
    );
    debug.push(format!("{e} {e:?}"));

    let nacos = client(&server, Some((USER, PASSWORD)), &mut debug).await;
    let seen = Seen::follow(nacos.discovery("echo").build());
    let handle = nacos
        .register(Registration::new("echo", addr))
        .await
        .unwrap();
    debug.push(format!("{handle:?}"));
    eventually(
        Duration::from_secs(15),
        "the registration discovered",
        || async { seen.authorities() == ["127.0.0.1:49001"] },
    )
    .await;
    handle.deregister().await.unwrap();
    eventually(
        Duration::from_secs(15),
        "the deregistration discovered",
        || async { seen.authorities().is_empty() },
    )
    .await;
    seen.assert_clean();

    for text in &debug {
        assert_clean("a Debug or Display text", text);
    }
    let text = logs.text();
    assert!(
        text.contains("logged in to nacos"),
        "the login is logged (without secrets)"
    );
    assert_clean("the TRACE log", &text);
}
