//! The JSON field names (Go struct fields) each request body may carry.

/// `ServiceDefinition` (agent service register).
#[rustfmt::skip]
pub(crate) const SERVICE_FIELDS: &[&str] = &[
    "Kind", "ID", "Name", "Tags", "Address", "TaggedAddresses", "Meta", "Port", "SocketPath",
    "Check", "Checks", "Weights", "Token", "EnableTagOverride", "Proxy", "Connect", "Namespace",
    "Partition", "Locality",
];

/// `CheckType` plus the `CheckDefinition` extras (`ID`, `ServiceID`, `Token`…).
#[rustfmt::skip]
pub(crate) const CHECK_FIELDS: &[&str] = &[
    "ID", "CheckID", "Name", "Status", "Notes", "ServiceID", "Token", "Namespace", "Partition",
    "ScriptArgs", "Args", "HTTP", "H2PING", "H2PingUseTLS", "Header", "Method", "Body",
    "DisableRedirects", "TCP", "TCPUseTLS", "UDP", "Interval", "AliasNode", "AliasService",
    "DockerContainerID", "Shell", "GRPC", "GRPCUseTLS", "OSService", "TLSServerName",
    "TLSSkipVerify", "Timeout", "TTL", "SuccessBeforePassing", "FailuresBeforeWarning",
    "FailuresBeforeCritical", "DeregisterCriticalServiceAfter", "OutputMaxSize",
];

/// `RegisterRequest` (catalog register).
#[rustfmt::skip]
pub(crate) const REGISTER_FIELDS: &[&str] = &[
    "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "Service", "Check",
    "Checks", "SkipNodeUpdate", "Token", "Locality", "PeerName", "Partition", "EnterpriseMeta",
    "RaftIndex", "WriteRequest",
];

/// `NodeService` (catalog register `Service`).
#[rustfmt::skip]
pub(crate) const NODE_SERVICE_FIELDS: &[&str] = &[
    "Kind", "ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port", "SocketPath",
    "Weights", "EnableTagOverride", "Proxy", "Connect", "Locality", "PeerName", "Namespace",
    "Partition", "CreateIndex", "ModifyIndex", "LocallyRegisteredAsSidecar", "RaftIndex",
    "ContentHash", "Datacenter",
];

/// `HealthCheck` (catalog register `Check`/`Checks`).
#[rustfmt::skip]
pub(crate) const HEALTH_CHECK_FIELDS: &[&str] = &[
    "Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
    "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "Definition", "Namespace",
    "Partition", "PeerName", "CreateIndex", "ModifyIndex", "RaftIndex",
];
