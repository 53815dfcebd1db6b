//! An authoritative DNS server for the zone `test.`, in process on 127.0.0.1 (UDP),
//! whose records the tests change while it runs, and which they stop and restart.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::UdpSocket;

const ORIGIN: &str = "test.";

/// The server and its zone. Dropping it stops the server.
pub(crate) struct TestZone {
    zone: Arc<InMemoryZoneHandler>,
    addr: SocketAddr,
    server: Option<Server<Catalog>>,
    serial: AtomicU32,
}

impl TestZone {
    /// A zone with only its SOA, served on a free UDP port of 127.0.0.1.
    pub(crate) async fn start() -> TestZone {
        let origin = name(ORIGIN);
        let zone: InMemoryZoneHandler =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        // The minimum (negative-answer TTL) is short, as every TTL in these tests.
        let soa = SOA::new(name("ns.test."), name("admin.test."), 1, 60, 60, 60, 1);
        zone.upsert(Record::from_rdata(origin, 1, RData::SOA(soa)), 1)
            .await;
        let mut zone = TestZone {
            zone: Arc::new(zone),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            server: None,
            serial: AtomicU32::new(1),
        };
        zone.restart().await;
        zone
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering: queries to its port are refused.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server
                .shutdown_gracefully()
                .await
                .expect("DNS server stops");
        }
    }

    /// Serves the zone again, on the same port.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        let socket = UdpSocket::bind(self.addr).await.expect("bind the DNS port");
        self.addr = socket.local_addr().expect("local addr");
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = self.zone.clone();
        catalog.upsert(LowerName::from(name(ORIGIN)), vec![handler]);
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        self.server = Some(server);
    }

    /// Replaces the A and AAAA records of `host` with `ips`.
    pub(crate) async fn set_addrs(&self, host: &str, ips: &[IpAddr], ttl: u32) {
        self.remove(host, RecordType::A).await;
        self.remove(host, RecordType::AAAA).await;
        for ip in ips {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            self.upsert(Record::from_rdata(name(host), ttl, data)).await;
        }
    }

    /// Replaces the SRV records of `service` with `(priority, weight, port, target)`.
    pub(crate) async fn set_srv(&self, service: &str, records: &[(u16, u16, u16, &str)], ttl: u32) {
        self.remove(service, RecordType::SRV).await;
        for &(priority, weight, port, target) in records {
            let srv = SRV::new(priority, weight, port, name(target));
            self.upsert(Record::from_rdata(name(service), ttl, RData::SRV(srv)))
                .await;
        }
    }

    /// Replaces the TXT records of `owner` with `records`, each given by its
    /// character-strings, at once: no query sees a half-done change.
    #[allow(dead_code)] // Only the service config tests set TXT records.
    pub(crate) async fn set_txt(&self, owner: &str, records: &[&[&str]], ttl: u32) {
        let mut set = RecordSet::with_ttl(name(owner), RecordType::TXT, ttl);
        for strings in records {
            let strings = strings.iter().map(|s| (*s).to_owned()).collect();
            set.add_rdata(RData::TXT(TXT::new(strings)));
        }
        let key = RrKey::new(LowerName::from(name(owner)), RecordType::TXT);
        self.zone.records_mut().await.insert(key, Arc::new(set));
    }

    /// Removes the records of `owner` of type `kind`.
    pub(crate) async fn remove(&self, owner: &str, kind: RecordType) {
        let key = RrKey::new(LowerName::from(name(owner)), kind);
        self.zone.records_mut().await.remove(&key);
    }

    async fn upsert(&self, record: Record) {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(self.zone.upsert(record, serial).await, "record added");
    }
}

fn name(s: &str) -> Name {
    Name::from_str(s).expect("DNS name")
}
