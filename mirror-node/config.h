// cairn-node's configuration: TOML file ([node] and [[upstream]] tables),
// overridden by flags.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "replication_loop.h"

namespace cairn::node {

struct ServeConfig {
  std::string data;
  std::string listen = "127.0.0.1:7070";
  std::string http;  // HTTP gateway HOST:PORT; empty: off
  std::string trust;
  std::string log_level = "info";
  // A file the node writes its log to and rotates (empty: standard error).
  std::string log_file;
  int64_t log_max_bytes = 64 << 20;
  int64_t log_files = 5;
  // Re-hash chunks read for gRPC clients (who verify every chunk themselves;
  // the scrub finds rot). Default: false.
  bool verify_reads = false;
  std::string region;
  // Where chunks live: "" (pack files under data) or "s3://BUCKET[/PREFIX]"
  // (endpoint and region from [s3] or CAIRN_S3_*, credentials from
  // CAIRN_S3_ACCESS_KEY/CAIRN_S3_SECRET_KEY only).
  std::string chunks;
  std::string s3_endpoint, s3_region = "default";
  int s3_pack_mib = 16;
  int s3_parallel_uploads = 4;
  int s3_cache_mib = 1024;  // the read cache under DATA/s3-cache; 0: none
  // This frontend collects the bucket's garbage (one per bucket); every
  // frontend answers the collector's rounds this often.
  bool s3_collector = false;
  int s3_answer_seconds = 60;
  std::vector<std::string> upstreams;
  std::vector<std::string> peers;
  std::vector<cairn::node::ReplicationLoop::UpstreamConfig> upstream_tables;
  // TLS (PEM file paths): the node's certificate and key; a CA to verify
  // clients (mutual TLS) and the nodes this one connects to.
  std::string tls_cert, tls_key, tls_ca;
  bool tls_require_client_cert = false;
  // Abuse limits.
  int max_streams_per_peer = 64;
  int max_sessions_per_peer = 16;
  int stream_idle_seconds = 30;
  int call_memory_mib = 1024;
  int max_streams_per_connection = 100;
  uint64_t upload_bytes_per_day = 0;  // per publisher key; 0: unlimited
  // Capacity (Repository::MakeRoom): releases' bytes the node holds at most
  // (0: no cap), per namespace ([namespace_limits]), and what is never
  // evicted.
  uint64_t max_bytes = 0;
  std::vector<std::pair<std::string, uint64_t>> namespace_limits;
  std::vector<std::string> pins;
  // The background scrub (scrub.h): bytes re-hashed per second at most (0:
  // off) and hours from one pass's start to the next.
  uint64_t scrub_bytes_per_second = 32ULL << 20;
  // Free bytes kept on the data directory's file system: new chunks (uploads,
  // replication, pull-through) are refused below it. Default: 1 GiB.
  uint64_t min_free_bytes = 1ULL << 30;
  int scrub_interval_hours = 168;
  int scrub_repair_retry_seconds = 60;
  // Garbage collection (gc_loop.h): hours between background passes (0:
  // only `cairn-node gc`), the grace period of new chunks, compaction below
  // this live percentage of a pack, and how long a replication's staged
  // chunk lists nothing else names are kept.
  int gc_interval_hours = 24;
  int gc_grace_hours = 24;
  int gc_compact_below_percent = 50;
  int gc_staged_retention_days = 7;
  // Days a withheld release is kept before a pass drops it (0: for ever).
  int withheld_retention_days = 30;
  // Days a yanked release is kept before a pass drops it (0: kept).
  int yanked_retention_days = 0;
  // Who may send bundles over the network (cairn import): "loopback", "any"
  // or "none". cairn-node import on the node's machine always works.
  std::string import_from = "loopback";
  // On SIGTERM, answers in progress get this long to finish (the systemd
  // unit's TimeoutStopSec must be longer). Default: 10.
  int drain_seconds = 10;
  // A new pack file starts past this size (the unit compaction rewrites).
  int pack_file_mib = 4096;
  std::vector<std::pair<std::string, uint64_t>> upload_quota_by_key;  // [quota] key_id = bytes
  // [on_demand]: pull-through from the upstreams (on when there are any).
  bool on_demand = true;
  ReplicationPolicy on_demand_policy;  // include, exclude, max_release_bytes
  // [http]: the HTTP gateway's limits.
  int http_max_connections = 4096;
  int http_max_connections_per_client = 256;
  int http_requests_per_second_per_client = 1000;
  int http_tree_page_size = 1000;
  int http_max_read_ahead_mib = 256;
  // Re-hash chunks before they go to HTTP clients (curl cannot verify).
  bool http_verify_reads = true;
  // How: "crc32c" (the check recorded when the chunk's SHA-256 was verified
  // on arrival; SHA-256 where none was recorded) or "sha256" (a full re-hash).
  std::string http_verify_reads_with = "crc32c";
  // Send chunk bytes over plain HTTP with sendfile (no copy in the node).
  bool http_sendfile = true;
};

// Reads and parses a config file (at most 1 MiB). InvalidArgument naming the
// file, line and key for anything wrong.
absl::Status LoadConfig(const std::string& path, ServeConfig* c);
// The same over text; `path` names it in errors.
absl::Status ParseConfig(std::string_view text, const std::string& path, ServeConfig* c);

// Checks what flags and the file gave together: the log level (any case of
// the names the node prints; stored in canonical form), every address, the
// per-peer limits. InvalidArgument naming the setting and the allowed values.
absl::Status ValidateConfig(ServeConfig* c);

// /var/lib/cairn for root, else $XDG_DATA_HOME/cairn/node.
std::string DefaultDataDir();

}  // namespace cairn::node
