//! Discovery and registration against a real Nacos-compatible server (rnacos).
#![cfg(feature = "nacos")]

#[path = "support/nacos.rs"]
mod nacos_support;
mod support;

use std::time::Duration;

use nacos_support::{Seen, client, client_at, http_register, server_serving};
use support::{eventually, trace_init};
use tonic_discovery::nacos::Registration;
use tonic_discovery_testkit::NacosServer;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn discovers_rust_and_open_api_registrations_with_their_metadata() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let seen = Seen::follow(nacos.discovery("echo").build());

    let handle = nacos
        .register(
            Registration::new("echo", "127.0.0.1:41001".parse().unwrap())
                .meta("version", "2")
                .weight(3.0),
        )
        .await
        .unwrap();
    assert_eq!(handle.id(), "127.0.0.1#41001#DEFAULT#DEFAULT_GROUP@@echo");
    // A Java or Go service registering over HTTP (persistent, so no heartbeats needed).
    http_register(
        &server,
        "echo",
        "127.0.0.1:41002",
        &[
            ("ephemeral", "false"),
            ("metadata", r#"{"lang":"java"}"#),
            ("clusterName", "east"),
        ],
    )
    .await;

    let both = ["127.0.0.1:41001", "127.0.0.1:41002"];
    eventually(WAIT, "both instances", || async {
        seen.authorities() == both
    })
    .await;
    assert_eq!(seen.meta("127.0.0.1:41001")["version"], "2");
    assert_eq!(seen.at("127.0.0.1:41001").unwrap().weight(), 3);
    assert_eq!(seen.meta("127.0.0.1:41002")["lang"], "java");
    assert_eq!(seen.meta("127.0.0.1:41002")["nacos.cluster"], "east");
    // A named cluster is the instance's zone; the default cluster says nothing.
    assert_eq!(
        seen.at("127.0.0.1:41002").unwrap().locality().zone(),
        Some("east")
    );
    assert!(seen.at("127.0.0.1:41001").unwrap().locality().is_unknown());

    // Metadata filters, per discovery: equality, or any predicate.
    let v2 = Seen::follow(nacos.discovery("echo").meta("version", "2").build());
    let java = Seen::follow(
        nacos
            .discovery("echo")
            .meta_filter(|m| m.get("lang").is_some_and(|l| l == "java"))
            .build(),
    );
    eventually(WAIT, "each filter's instance only", || async {
        v2.authorities() == ["127.0.0.1:41001"] && java.authorities() == ["127.0.0.1:41002"]
    })
    .await;
    assert_eq!(server_serving(&server, "echo", &[]).await.unwrap(), both);

    // A discovery of one cluster sees only it; other services are not mixed in.
    http_register(
        &server,
        "echo-admin",
        "127.0.0.1:41009",
        &[("ephemeral", "false")],
    )
    .await;
    let east = Seen::follow(nacos.discovery("echo").cluster("east").build());
    eventually(WAIT, "the east cluster only", || async {
        east.authorities() == ["127.0.0.1:41002"]
    })
    .await;

    handle.deregister().await.unwrap();
    eventually(WAIT, "the deregistered instance to go", || async {
        seen.authorities() == ["127.0.0.1:41002"]
    })
    .await;
    let (status, _) = server
        .open_api(
            "DELETE",
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "echo"),
                ("ip", "127.0.0.1"),
                ("port", "41002"),
                ("ephemeral", "false"),
                ("clusterName", "east"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    eventually(WAIT, "the open API instance to go", || async {
        seen.authorities().is_empty() && east.authorities().is_empty()
    })
    .await;
    seen.assert_clean();
    east.assert_clean();
}

#[tokio::test]
async fn namespaces_and_groups_separate_services() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let dev = client_at(
        &server,
        &format!("{}?namespace=dev&group=RPC", server.url()),
    )
    .await;
    let public = client(&server).await;
    let dev_seen = Seen::follow(dev.discovery("echo").build());
    let public_seen = Seen::follow(public.discovery("echo").build());
    let other_group = Seen::follow(public.discovery("echo").group("RPC").build());

    let _dev = dev
        .register(Registration::new(
            "echo",
            "127.0.0.1:42001".parse().unwrap(),
        ))
        .await
        .unwrap();
    let _public = public
        .register(Registration::new(
            "echo",
            "127.0.0.1:42002".parse().unwrap(),
        ))
        .await
        .unwrap();
    let _grouped = public
        .register(Registration::new("echo", "127.0.0.1:42003".parse().unwrap()).group("RPC"))
        .await
        .unwrap();
    eventually(
        WAIT,
        "each registration in its own namespace and group",
        || async {
            dev_seen.authorities() == ["127.0.0.1:42001"]
                && public_seen.authorities() == ["127.0.0.1:42002"]
                && other_group.authorities() == ["127.0.0.1:42003"]
        },
    )
    .await;
    dev_seen.assert_clean();
    public_seen.assert_clean();
}

// Unhealthy instances are filtered like disabled ones (`select` unit tests); rnacos
// gives no way to mark one unhealthy on demand.
#[tokio::test]
async fn disabled_and_weightless_instances_are_not_discovered() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let seen = Seen::follow(nacos.discovery("echo").build());
    let persistent = [("ephemeral", "false")];
    http_register(&server, "echo", "127.0.0.1:43001", &persistent).await;
    http_register(&server, "echo", "127.0.0.1:43002", &persistent).await;
    http_register(&server, "echo", "127.0.0.1:43003", &persistent).await;
    eventually(WAIT, "three instances", || async {
        seen.authorities().len() == 3
    })
    .await;

    let update = |port: &'static str, field: &'static str, value: &'static str| {
        let server = &server;
        async move {
            let params = [
                ("serviceName", "echo"),
                ("ip", "127.0.0.1"),
                ("port", port),
                ("ephemeral", "false"),
                (field, value),
            ];
            let (status, body) = server
                .open_api("PUT", "/nacos/v1/ns/instance", &params)
                .await
                .unwrap();
            assert_eq!(status, 200, "{body}");
        }
    };
    update("43001", "enabled", "false").await;
    update("43002", "weight", "0").await;
    eventually(
        WAIT,
        "the disabled and weightless instances to go",
        || async { seen.authorities() == ["127.0.0.1:43003"] },
    )
    .await;
    assert_eq!(
        server_serving(&server, "echo", &[]).await.unwrap(),
        ["127.0.0.1:43003"]
    );
    update("43001", "enabled", "true").await;
    eventually(WAIT, "the re-enabled instance", || async {
        seen.authorities() == ["127.0.0.1:43001", "127.0.0.1:43003"]
    })
    .await;
    seen.assert_clean();
}

#[tokio::test]
async fn a_server_restart_keeps_the_last_set_then_converges_with_the_registration_back() {
    trace_init();
    let mut server = NacosServer::start().await.unwrap();
    // Read again every 200 ms without a push, so the outage shows in `failures`.
    let nacos = tonic_discovery::nacos::Client::builder(server.url())
        .cache_dir(server.scratch_dir("cache-resync"))
        .request_timeout(Duration::from_secs(2))
        .resync_interval(Duration::from_millis(200))
        .connect()
        .await
        .expect("nacos client");
    let registrar = client(&server).await;
    let seen = Seen::follow(nacos.discovery("echo").build());
    let _handle = registrar
        .register(Registration::new(
            "echo",
            "127.0.0.1:44001".parse().unwrap(),
        ))
        .await
        .unwrap();
    http_register(
        &server,
        "echo",
        "127.0.0.1:44002",
        &[("ephemeral", "false")],
    )
    .await;
    let both = ["127.0.0.1:44001", "127.0.0.1:44002"];
    eventually(WAIT, "both instances", || async {
        seen.authorities() == both
    })
    .await;

    server.kill().await;
    eventually(WAIT, "the discovery to notice the outage", || async {
        seen.failures() >= 3
    })
    .await;
    assert_eq!(
        seen.authorities(),
        both,
        "the last set is kept while the server is down"
    );

    server.restart().await.unwrap();
    // The restarted server lost the ephemeral instance; the SDK registers it again.
    eventually(
        Duration::from_secs(30),
        "the registration back on the server",
        || async {
            server_serving(&server, "echo", &[])
                .await
                .is_some_and(|s| s.contains(&"127.0.0.1:44001".to_owned()))
        },
    )
    .await;
    eventually(WAIT, "the discovered set equal to the server's", || async {
        let on_server = server_serving(&server, "echo", &[]).await;
        seen.failures() == 0 && on_server.as_deref() == Some(&seen.authorities()[..])
    })
    .await;
    seen.assert_clean();
}

/// How many subscribers the server lists for `service`.
async fn server_subscribers(server: &NacosServer, service: &str) -> Option<u64> {
    let (status, body) = server
        .open_api(
            "GET",
            "/nacos/v1/ns/service/subscribers",
            &[("serviceName", service)],
        )
        .await
        .ok()?;
    let list: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| list["count"].as_u64())?
}

#[tokio::test]
async fn discoveries_of_other_clusters_share_one_subscription() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let east = nacos.discovery("echo").cluster("east").build();
    let west = nacos.discovery("echo").cluster("west").build();
    let (east_state, west_state) = (east.observer(), west.observer());
    let (east, west) = (Seen::follow(east), Seen::follow(west));
    let persistent = |cluster| [("ephemeral", "false"), ("clusterName", cluster)];
    http_register(&server, "echo", "127.0.0.1:45001", &persistent("east")).await;
    http_register(&server, "echo", "127.0.0.1:45002", &persistent("west")).await;
    http_register(&server, "echo", "127.0.0.1:45003", &persistent("north")).await;

    eventually(WAIT, "each discovery's cluster only", || async {
        east.authorities() == ["127.0.0.1:45001"] && west.authorities() == ["127.0.0.1:45002"]
    })
    .await;
    // One watch and one subscription on the server; its state lists every cluster.
    assert!(format!("{nacos:?}").contains("watches: 1"), "{nacos:?}");
    eventually(WAIT, "one subscriber on the server", || async {
        server_subscribers(&server, "echo").await == Some(1)
    })
    .await;
    eventually(WAIT, "one state, listing every cluster", || async {
        let (e, w) = (east_state.state(), west_state.state());
        e.instances().len() == 3 && e.answers() == w.answers()
    })
    .await;
    east.assert_clean();
    west.assert_clean();

    // The last discovery gone, the subscription ends on the client and the server.
    drop((east, west));
    eventually(WAIT, "no subscriber left", || async {
        !format!("{nacos:?}").contains("watches: 1")
            && server_subscribers(&server, "echo").await == Some(0)
    })
    .await;
}
